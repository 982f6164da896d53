"""Config validation, the baseline state file and sd_notify/signal plumbing."""

import json
import os
import signal
import socket

import pytest

from governor.daemon.config import Config, ConfigError, load_config
from governor.daemon.lifecycle import Flags, Notifier
from governor.daemon.statefile import StateFileError, clear_state, load_state, save_state
from governor.drivers.base import Baseline


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(None)
    assert cfg.daemon.tick_hz == 10 and cfg.daemon.rollback == "always"
    cfg2 = cfg.with_overrides(board="sim:jetson-nano", endpoint=None)
    assert cfg2.daemon.board == "sim:jetson-nano" and cfg2.daemon.endpoint == ""
    assert cfg2.endpoint().startswith("ipc://")


@pytest.mark.parametrize(
    "text, key",
    [
        ("[daemon]\ntick_hz = 0\n", "daemon.tick_hz"),
        ("[daemon]\nendpoint = 'http://x'\n", "daemon.endpoint"),
        ("[daemon]\nrollbak = 'never'\n", "daemon.rollbak"),
        ("[policy]\nhysteresis = 'high'\n", "policy.hysteresis"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, key):
    f = tmp_path / "governor.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert str(f) in str(err.value) and key in str(err.value)


def test_unreadable_and_invalid_toml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[daemon\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_override_is_validated():
    with pytest.raises(ConfigError, match="command line"):
        Config().with_overrides(tick_hz=-1)


def test_state_file_round_trip_and_clear(tmp_path):
    path = tmp_path / "state" / "baseline.json"
    assert load_state(path) is None
    b = Baseline("cpu-a57", (("sys/x/scaling_max_freq", "2035200"), ("sys/x/scaling_min_freq", "345600")))
    save_state(path, "jetson-tx2", "/fake", [b])
    st = load_state(path)
    assert st is not None and st.board == "jetson-tx2" and st.baselines == (b,) and st.pid == os.getpid()
    assert not list(path.parent.glob(".baseline-*"))  # atomic write left no temp file
    clear_state(path)
    assert load_state(path) is None


@pytest.mark.parametrize("content", ["{not json", json.dumps({"format": "other"}),
                                     json.dumps({"format": "dnn-governor-baseline", "version": 1})])
def test_damaged_state_file_says_what_to_do(tmp_path, content):
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=r"governor|move it away|delete"):
        load_state(path)


def test_flags_first_signal_graceful_second_sigint_forced():
    f = Flags()
    f.handle(signal.SIGTERM)
    assert f.should_exit and not f.force_exit
    f.handle(signal.SIGINT)
    assert f.force_exit
    g = Flags()
    g.handle(signal.SIGHUP)
    assert g.reload and not g.should_exit


def test_notifier_sends_datagrams(tmp_path):
    addr = str(tmp_path / "notify.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(addr)
    srv.settimeout(2)
    n = Notifier({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "2000000"})
    assert n.enabled and n.watchdog_interval_s == pytest.approx(1.0)
    assert n.ready("serving")
    assert srv.recv(100) == b"READY=1\nSTATUS=serving"
    assert n.watchdog() and srv.recv(100) == b"WATCHDOG=1"
    assert n.stopping() and srv.recv(100) == b"STOPPING=1"
    n.close()
    srv.close()


def test_notifier_silent_without_socket_and_tolerates_dead_socket(tmp_path):
    assert not Notifier({}).ready()
    dead = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody.sock")})
    assert dead.ready() is False  # never raises
    other_pid = Notifier({"NOTIFY_SOCKET": "x", "WATCHDOG_USEC": "100", "WATCHDOG_PID": "1"})
    assert other_pid.watchdog_interval_s == 0.0


def test_shipped_config_documents_every_key_with_its_default():
    from pathlib import Path

    shipped = Path(__file__).resolve().parents[2] / "systemd" / "governor.toml"
    cfg = load_config(shipped)
    assert cfg == Config()
    text = shipped.read_text()
    for section, model in cfg:
        for key in type(model).model_fields:
            assert f"\n{key} = " in text, f"[{section}] {key} is not documented in {shipped.name}"
