"""The daemon run as systemd runs it: a subprocess with NOTIFY_SOCKET, on a fake board tree.

READY=1 must arrive, WATCHDOG=1 pings must follow at the asked rate, requests must be served with
setpoints written through the drivers, and SIGTERM must leave the tree byte-identical to how the
daemon found it (and remove the state file).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from governor_client import Client

from governor.drivers.catalogue import load_board
from governor.testing import FakeTree, make_fake_tree


def _notify_socket(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.5)
    return sock


def _collect(sock, until, stop):
    got = []
    while time.monotonic() < until:
        with contextlib.suppress(TimeoutError):
            got += sock.recv(4096).decode().split("\n")
        if stop(got):
            break
    return got


@pytest.fixture
def tree_dir(tmp_path):
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else str(tmp_path)
    import tempfile

    d = tempfile.mkdtemp(prefix="gov-systemd-", dir=base)
    yield d
    import shutil

    shutil.rmtree(d, ignore_errors=True)


def test_ready_watchdog_and_sigterm_restore(tmp_path, tree_dir, quick_model):
    tree = make_fake_tree(load_board("jetson-nano"), __import__("pathlib").Path(tree_dir))
    baseline = tree.snapshot_bytes()
    notify = _notify_socket(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000",
           "STATE_DIRECTORY": str(tmp_path / "state"), "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    env.pop("WATCHDOG_PID", None)
    endpoint = f"ipc://{tmp_path}/run/governor.sock"
    # The pins must still be there when the test looks: with the shipped idle_clocks = release they were
    # handed back 150 ms after the run, and a loaded machine looked later than that (a flaky failure).
    config = tmp_path / "keep.toml"
    config.write_text('[policy]\nidle_clocks = "keep"\n')
    proc = subprocess.Popen(
        [sys.executable, "-m", "governor", "serve", "--config", str(config), "--board", "jetson-nano",
         "--sysfs-root", tree_dir, "--model", str(quick_model), "--endpoint", endpoint, "--profile-points", "12"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = _collect(notify, time.monotonic() + 240, lambda g: "READY=1" in g or proc.poll() is not None)
        assert "READY=1" in lines, proc.stdout.read() if proc.poll() is not None else lines
        state = tmp_path / "state" / "baseline.json"
        assert state.exists()
        with Client(endpoint, timeout_ms=20000, retries=0) as client:
            res = client.infer(np.zeros((1, 1, 8, 8), np.float32), deadline_ms=500, objective="min_latency")
            assert res.point.setpoints_hz and not res.simulated
            status = client.status()
            assert status.board == "jetson-nano" and status.served == 1
        assert FakeTree(tree_dir).snapshot_bytes() != baseline  # the daemon really pinned clocks
        pings = _collect(notify, time.monotonic() + 2.0, lambda g: g.count("WATCHDOG=1") >= 3)
        assert pings.count("WATCHDOG=1") >= 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        tail = _collect(notify, time.monotonic() + 2.0, lambda g: "STOPPING=1" in g)
        assert "STOPPING=1" in tail
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    after = FakeTree(tree_dir).snapshot_bytes()
    changed = sorted(k for k in set(after) | set(baseline) if after.get(k) != baseline.get(k))
    assert not changed, f"files differ from the baseline after SIGTERM: {changed[:10]}"
    assert not state.exists()
