"""A start that fails, or is stopped, leaves nothing behind and fails before any work.

Everything that needs no measurement (config, keys, sockets, model file) is checked before the
baseline is written and before first-start profiling; whatever fails, the fake board's files stay
byte-identical, and no state file and no socket file of this daemon stays. SIGTERM during first-start
profiling (the clocks pinned) restores the board like SIGINT does.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
import zmq

from governor.daemon.app import build_app, restore_leftover
from governor.daemon.config import Config
from governor.daemon.statefile import save_state
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import FakeTree, make_fake_tree
from governor.transport.zmq_server import TransportError

BOARD = "jetson-nano"


@pytest.fixture
def work(monkeypatch):
    """A short directory (ipc paths must stay under ~100 bytes), in RAM if possible, as the state and
    runtime directories."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    d = Path(tempfile.mkdtemp(prefix="gov-fail-", dir=base))
    monkeypatch.setenv("STATE_DIRECTORY", str(d / "state"))
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(d / "run"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tree(work):
    return make_fake_tree(load_board(BOARD), work / "tree")


def _config(work: Path, tree: FakeTree, model: Path, **daemon) -> Config:
    config = Config().with_overrides(endpoint=f"ipc://{work}/run/g.sock", board=BOARD, sysfs_root=str(tree.root),
                                     model=str(model), profile_points=8)
    return config.model_copy(update={"daemon": config.daemon.model_copy(update=daemon)}) if daemon else config


def _left_behind(work: Path) -> list[str]:
    """Files start-up may create: the state directory (baseline, profiles) and the runtime directory (sockets)."""
    return sorted(str(p.relative_to(work)) for sub in ("state", "run") for p in (work / sub).rglob("*")
                  if not p.is_dir())


def _fails(config: Config, error: type[BaseException]) -> tuple[list[str], float]:
    said: list[str] = []
    start = time.perf_counter()
    with pytest.raises(error):
        build_app(config, say=said.append)
    return said, time.perf_counter() - start


def _header_only(quick_model: Path, path: Path) -> Path:
    """A model file whose header (metadata) is valid and whose weights are missing: only a full load finds out."""
    with zipfile.ZipFile(quick_model) as src, zipfile.ZipFile(path, "w") as dst:
        dst.writestr("meta.json", src.read("meta.json"))
    return path


@pytest.mark.parametrize("kind", ["garbage", "missing", "header-only"])
def test_bad_model_leaves_nothing(work, tree, quick_model, kind):
    before = tree.snapshot_bytes()
    model = {"garbage": work / "bad.dgm", "missing": work / "none.dgm", "header-only": work / "nowts.dgm"}[kind]
    if kind == "garbage":
        model.write_bytes(b"not a model\n")
    elif kind == "header-only":
        _header_only(quick_model, model)
    from governor.core.modelmeta import ModelFileError

    said, took = _fails(_config(work, tree, model), ModelFileError)
    assert _left_behind(work) == [], said
    assert tree.snapshot_bytes() == before
    assert not any("profiling" in line for line in said)
    if kind != "header-only":  # the header is checked before anything is written, so it fails at once
        assert took < 1.0


def test_refused_tcp_config_fails_before_work_and_leaves_nothing(work, tree, quick_model):
    before = tree.snapshot_bytes()
    said, took = _fails(_config(work, tree, quick_model, endpoint="tcp://127.0.0.1:0"), TransportError)
    assert not any("profiling" in line for line in said), said
    assert took < 1.0
    assert _left_behind(work) == []
    assert tree.snapshot_bytes() == before


def test_a_named_profile_that_is_not_there_fails_before_the_bundled_model_is_trained(work, tree):
    # `serve --profile TYPO` trained the bundled model (seconds) before it found the profile missing.
    from governor.core.perf.schema import ProfileError

    config = Config().with_overrides(endpoint=f"ipc://{work}/run/g.sock", board=BOARD, sysfs_root=str(tree.root),
                                     profile=str(work / "typo.json"))  # no --model: the bundled one
    said, took = _fails(config, ProfileError)
    assert not any("training" in line for line in said), said
    assert took < 1.0
    assert _left_behind(work) == []


def test_telemetry_socket_clash_fails_before_profiling(work, tree, quick_model):
    """A second daemon whose telemetry socket belongs to a live one: refused in well under a second (it
    used to profile for over a minute first), and the other daemon's socket file is left alone."""
    before = tree.snapshot_bytes()
    (work / "run").mkdir()
    other = zmq.Context.instance().socket(zmq.PUB)
    other.setsockopt(zmq.LINGER, 0)
    theirs = work / "run" / "governor-telemetry.sock"
    other.bind(f"ipc://{theirs}")
    try:
        said, took = _fails(_config(work, tree, quick_model), TransportError)
        assert took < 1.0, f"took {took:.2f} s"
        assert not any("profiling" in line for line in said), said
        assert theirs.exists()
        assert _left_behind(work) == ["run/governor-telemetry.sock"]  # theirs only: our request socket is gone
        assert tree.snapshot_bytes() == before
    finally:
        other.close()


def test_a_failed_start_keeps_a_dead_daemons_leftover_for_the_next(work, tree, quick_model):
    """The leftover of a daemon that died is restored by the next start that gets that far, not deleted by
    one that fails its checks."""
    target = open_target(BOARD, str(tree.root))
    try:
        state = work / "state" / "baseline.json"
        save_state(state, BOARD, str(tree.root), target.board.snapshot())
    finally:
        target.close()
    (work / "bad.dgm").write_bytes(b"junk")
    from governor.core.modelmeta import ModelFileError

    left = state.read_bytes()
    _fails(_config(work, tree, work / "bad.dgm"), ModelFileError)
    assert state.read_bytes() == left


def test_leftover_of_a_simulated_board_says_whose_and_where(work):
    state = work / "state" / "baseline.json"
    target = open_target("sim:jetson-tx2", clock="virtual")
    try:
        save_state(state, "sim:jetson-tx2", target.root, target.board.snapshot())
    finally:
        target.close()
    note = restore_leftover(state)
    assert note is not None and "sim:jetson-tx2" in note and str(state) in note and "no longer running" in note
    assert not state.exists()


def _wait_for_pinned(proc, lines: list[str], tree: FakeTree, before: dict, timeout_s: float) -> None:
    """Wait until the daemon says it profiles and has written the clocks."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if any(line.startswith("profiling") for line in lines) and tree.snapshot_bytes() != before:
            return
        time.sleep(0.05)
    raise AssertionError(f"profiling never pinned a clock: {lines[-10:]}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_during_first_start_profiling_restores_and_leaves_nothing(work, tree, quick_model, signum):
    before = tree.snapshot_bytes()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "governor", "serve", "--board", BOARD, "--sysfs-root", str(tree.root),
         "--model", str(quick_model), "--endpoint", f"ipc://{work}/run/g.sock", "--profile-points", "400"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        _wait_for_pinned(proc, lines, tree, before, timeout_s=120)
        assert (work / "state" / "baseline.json").exists()  # the baseline was saved before the first write
        proc.send_signal(signum)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    out = "".join(lines)
    assert code == (0 if signum == signal.SIGTERM else 130), out
    assert "Traceback" not in out
    assert f"stopped by {signal.Signals(signum).name} before serving" in out
    after = tree.snapshot_bytes()
    changed = sorted(k for k in set(after) | set(before) if after.get(k) != before.get(k))
    assert not changed, f"files differ from the baseline: {changed[:10]}"
    assert _left_behind(work) == [], out
