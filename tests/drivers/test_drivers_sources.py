"""Live sensor sources (``[sensors] source``): a tegrastats child replaying real TX2 lines, a jtop stand-in,
the choice under ``auto`` and explicit names, and the merge over the sysfs sweep."""

from __future__ import annotations

import socket
import sys
import tempfile
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest

from governor.core.types import Observation, frozen_map
from governor.drivers.base import ProbeResult
from governor.drivers.board import open_board
from governor.drivers.catalogue import load_board
from governor.drivers.sources import SourceError, TegrastatsSensors, choose_source, merge
from governor.drivers.tegrastats import SensorMapping, parse_tegrastats
from governor.testing import make_fake_tree

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tx2" / "tegrastats"
TX2_LINES = FIXTURES / "tx2-cpubench_c_1420800_g_624750000_m_800000000.txt"


def _spec(name: str):
    return load_board(name)


def fake_tegrastats(tmp_path: Path, lines: Path, *, count: int | None = None, garbage: bool = False) -> str:
    """An executable that behaves like ``tegrastats --interval MS``: prints ``lines`` one per interval.

    ``count`` lines and then it exits (status 3); ``garbage`` prints a non-tegrastats line and exits."""
    script = tmp_path / "tegrastats"
    script.write_text(f"#!{sys.executable}\n" + textwrap.dedent(f"""
        import sys, time
        ms = int(sys.argv[sys.argv.index("--interval") + 1])
        if {garbage!r}:
            print("tegrastats: permission denied", flush=True)
            sys.exit(1)
        lines = [ln for ln in open({str(lines)!r}) if ln.strip() and not ln.startswith("#")]
        n = 0
        while {count!r} is None or n < {count!r}:
            print(lines[n % len(lines)].strip(), flush=True)
            n += 1
            time.sleep(ms / 1000)
        sys.exit(3)
    """))
    script.chmod(0o755)
    return str(script)


def test_a_tegrastats_child_replays_real_tx2_lines_in_governor_units(tmp_path):
    exe = fake_tegrastats(tmp_path, TX2_LINES)
    first = parse_tegrastats(TX2_LINES.read_text().splitlines()[0])
    spec = _spec("jetson-tx2")
    sensors = TegrastatsSensors(SensorMapping.from_board(spec), interval_s=0.05, executable=exe)
    try:
        assert sensors.start().result is ProbeResult.SUCCESS
        assert sensors.command[1:] == ["--interval", "50"]
        obs = sensors.observe(12.5)
        assert obs.t == 12.5
        # VDD_IN is the TX2's board rail: the total is that rail, in mW, as the line printed it
        assert obs.total_power_mw == pytest.approx(obs.power_mw["VDD_IN"])
        assert 2000 < obs.power_mw["VDD_IN"] < 3000 and "VDD_SYS_CPU" in obs.power_mw
        assert all(0.0 <= u <= 1.0 for u in obs.util.values()) and obs.util
        assert obs.temps_c and all(20 < c < 60 for c in obs.temps_c.values())
        assert first.rails  # the parser agrees the fixture has rails
    finally:
        sensors.close()
    assert not sensors.running
    assert "stopped" in sensors.observe(13.0).unavailable[0]


def test_a_tegrastats_that_stops_printing_goes_stale_and_the_reason_is_listed(tmp_path):
    exe = fake_tegrastats(tmp_path, TX2_LINES, count=1)
    sensors = TegrastatsSensors(interval_s=0.05, executable=exe, stale_intervals=2)
    try:
        assert sensors.start().result is ProbeResult.SUCCESS
        deadline = time.monotonic() + 5
        while (obs := sensors.observe(1.0)).power_mw and time.monotonic() < deadline:
            time.sleep(0.02)
        assert obs.power_mw == {} and obs.total_power_mw is None
        (line,) = obs.unavailable
        assert line.startswith("tegrastats: ") and "readings from sysfs only" in line
        assert "exited with status 3" in line
    finally:
        sensors.close()


def test_a_tegrastats_that_prints_no_line_fails_its_start_with_what_it_printed(tmp_path):
    exe = fake_tegrastats(tmp_path, TX2_LINES, garbage=True)
    sensors = TegrastatsSensors(interval_s=0.05, executable=exe)
    probe = sensors.start(first_line_timeout_s=3)
    assert probe.result is ProbeResult.FAIL
    assert "permission denied" in probe.detail
    assert not sensors.running


def test_no_tegrastats_executable_is_a_fail_not_a_crash(tmp_path):
    probe = TegrastatsSensors(executable=str(tmp_path / "missing")).start()
    assert probe.result is ProbeResult.FAIL and "no runnable tegrastats" in probe.detail


def test_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive seconds"):
        TegrastatsSensors(interval_s=0)


# --- choice ---------------------------------------------------------------------------------------------------


def test_auto_on_a_fake_tree_stays_on_sysfs_and_says_why(tmp_path):
    spec = _spec("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    source, choice = choose_source("auto", spec, tree.sysfs)
    assert source is None and choice.name == "sysfs"
    assert "is not /" in choice.describe()


def test_auto_on_the_real_root_takes_tegrastats_when_no_jtop_answers(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)  # jetson-stats not installed
    spec = _spec("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    exe = fake_tegrastats(tmp_path, TX2_LINES)
    source, choice = choose_source("auto", spec, tree.sysfs, interval_s=0.05, tegrastats=exe, real_root=True)
    try:
        assert choice.name == "tegrastats" and source is not None and source.name == "tegrastats"
        assert choice.tried and choice.tried[0].startswith("jtop: ")
        assert exe in choice.describe()
    finally:
        if source is not None:
            source.close()


def test_auto_on_an_odroid_does_not_run_tegrastats(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)
    spec = _spec("odroid-xu3")
    tree = make_fake_tree(spec, tmp_path / "root")
    exe = fake_tegrastats(tmp_path, TX2_LINES)
    source, choice = choose_source("auto", spec, tree.sysfs, tegrastats=exe, real_root=True)
    assert source is None and choice.name == "sysfs"
    assert "Jetson boards" in choice.note


@pytest.mark.parametrize("name", ["jtop", "tegrastats"])
def test_a_source_named_explicitly_that_cannot_be_used_is_a_start_error_with_the_way_out(name, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "jtop", None)
    monkeypatch.setattr("governor.drivers.sources.tegrastats_executable", lambda: None)
    spec = _spec("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    with pytest.raises(SourceError) as err:
        choose_source(name, spec, tree.sysfs)
    message = str(err.value)
    assert message.startswith(f'[sensors] source = "{name}", but ')
    assert 'source = "sysfs"' in message
    assert ("jetson-stats" in message) if name == "jtop" else ("tegrastats" in message)


def test_an_unknown_source_name_is_refused(tmp_path):
    spec = _spec("jetson-tx2")
    with pytest.raises(SourceError, match="unknown sensor source 'tegra'"):
        choose_source("tegra", spec, make_fake_tree(spec, tmp_path / "root").sysfs)


class _JtopStandIn:
    """The jetson-stats client as the daemon uses it: ``jtop(interval)``, start/ok/close, five sections."""

    def __init__(self, interval=1.0):
        self.interval = interval
        self.power = {"rail": {"VDD_SYS_CPU": {"power": 706}, "VDD_SYS_GPU": {"power": 156}},
                      "tot": {"power": 2314, "name": "VDD_IN"}}
        self.temperature = {"BCPU": {"online": True, "temp": 43.5}, "GPU": {"online": True, "temp": 42.0}}
        self.gpu = {"gpu": {"status": {"load": 130.0}, "freq": {"cur": 624750}}}
        self.cpu = {"cpu": []}
        self.memory = {}

    def start(self):
        pass

    def ok(self, spin=False):
        return True

    def close(self):
        pass


@pytest.fixture
def jtop_service(monkeypatch):
    """A jtop package stand-in and a UNIX socket that speaks first, as the jtop service does."""
    module = types.ModuleType("jtop")
    module.jtop = _JtopStandIn
    monkeypatch.setitem(sys.modules, "jtop", module)
    path = Path(tempfile.mkdtemp(prefix="jtop-")) / "jtop.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    stop = threading.Event()

    def serve():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.sendall(b"\x00")
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield str(path)
    stop.set()
    thread.join()
    server.close()


def test_auto_prefers_a_jtop_service_that_answers(jtop_service, tmp_path):
    spec = _spec("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    source, choice = choose_source("auto", spec, tree.sysfs, jtop_socket=jtop_service, real_root=True,
                                   tegrastats=fake_tegrastats(tmp_path, TX2_LINES))
    try:
        assert choice.name == "jtop" and choice.where == jtop_service
        obs = source.observe(3.0)
        assert obs.power_mw["VDD_SYS_CPU"] == 706 and obs.total_power_mw == 2314
    finally:
        source.close()


# --- merge ----------------------------------------------------------------------------------------------------


def test_the_merge_takes_the_live_readings_and_keeps_sysfs_for_the_rest():
    sysfs = Observation(1.0, power_mw=frozen_map({"VDD_IN": 2000.0, "VDD_SYS_DDR": 300.0}), total_power_mw=2000.0,
                        temps_c=frozen_map({"GPU-therm": 40.0}), unavailable=("BCPU-therm: EAGAIN", "gpu: gone"))
    problems = {"domains": {}, "power": {}, "thermal": {"BCPU-therm": "EAGAIN"}, "load": {"gpu": "gone"}}
    live = Observation(1.0, power_mw=frozen_map({"VDD_IN": 2314.0}), total_power_mw=2314.0,
                       temps_c=frozen_map({"BCPU-therm": 43.5}))
    merged = merge(sysfs, problems, live, "tegrastats")
    assert merged.power_mw == {"VDD_IN": 2314.0, "VDD_SYS_DDR": 300.0} and merged.total_power_mw == 2314.0
    assert merged.temps_c == {"GPU-therm": 40.0, "BCPU-therm": 43.5}
    # the thermal category was covered by the live source; the load problem was not
    assert merged.unavailable == ("gpu: gone",)


def test_a_lost_live_source_leaves_the_sysfs_sweep_and_one_line():
    sysfs = Observation(1.0, power_mw=frozen_map({"VDD_IN": 2000.0}), total_power_mw=2000.0)
    live = Observation(1.0, unavailable=("jtop: lost the jtop service",))
    merged = merge(sysfs, {"domains": {}, "power": {}, "thermal": {}, "load": {}}, live, "jtop")
    assert merged.power_mw == sysfs.power_mw and merged.total_power_mw == 2000.0
    assert merged.unavailable == ("jtop: lost the jtop service",)


def test_a_board_with_a_live_source_merges_it_into_every_sample_and_closes_it(tmp_path, monkeypatch):
    spec = _spec("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    exe = fake_tegrastats(tmp_path, TX2_LINES)
    monkeypatch.setattr("governor.drivers.sources.tegrastats_executable", lambda: exe)
    board = open_board(spec, tree.sysfs, clock=time.monotonic, sensors="tegrastats")
    try:
        assert board.source_choice.name == "tegrastats"
        obs = board.sample()
        assert set(obs.domains) == {d.name for d in spec.domains}  # clocks still from sysfs
        assert 2000 < obs.total_power_mw < 3000  # the line's VDD_IN, not the fake tree's rails
    finally:
        board.close()
    assert board.source is None
