"""kill -9 of a daemon that pinned clocks, twice: once mid-request, then restart; once more, then `governor restore`.

What must hold: the state file survives the kill and holds the board's true baseline; a restarted
daemon puts that baseline back before anything else (had it not, its own baseline would be the
pinned state and the final restore would leave the board pinned); the client whose request was in
flight never hears "done" from the killed daemon, and its retry is answered by a fresh run.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
from governor_client import Client
from reliability_helpers import BOARD, changed_files, wait_for

from benchmarks.soak import start_daemon
from governor.daemon.statefile import load_state

SLOW_BATCH = 12_000  # digits inputs: about 2 s of inference on this VM, a wide window for the kill


def in_flight_infer(endpoint: str, result: dict) -> threading.Thread:
    """A client thread: one slow infer, retried (same id) every 4 s up to 8 times, as the client library does."""

    def run() -> None:
        batch = np.random.default_rng(0).uniform(0, 16, (SLOW_BATCH, 1, 8, 8)).astype(np.float32)
        try:
            with Client(endpoint, timeout_ms=4000, retries=8) as client:
                result["reply"] = client.infer(batch, deadline_ms=60_000)
        except Exception as exc:  # a failed retry is acceptable; a stale success is not
            result["error"] = exc
        result["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_reliability_kill9_mid_request_restart_and_restore(nano_tree, quick_model, profiled_state, scratch, figures):
    baseline = nano_tree.snapshot_bytes()
    work = scratch("gr-c-")
    first = start_daemon(work, nano_tree.root, quick_model, profiled_state, board=BOARD, name="first")
    first.wait_serving()
    result: dict = {}
    client = in_flight_infer(first.endpoint, result)
    wait_for(lambda: changed_files(baseline, nano_tree.snapshot_bytes()), 60, "the daemon to pin clocks")
    killed_at = time.monotonic()
    first.kill9()
    assert "reply" not in result  # the run was not over: nothing may have said "done"

    saved = load_state(first.state_file)
    assert saved is not None and saved.pid == first.proc.pid and saved.board == "jetson-nano"
    for base in saved.baselines:  # the state file holds the board as it was, not as it was pinned
        for rel, text in base.files:
            assert baseline[nano_tree.sysfs.canonical(rel)].decode() == text, rel

    second = start_daemon(work, nano_tree.root, quick_model, profiled_state, board=BOARD, name="second")
    second.wait_serving()
    said = [line for line in second.output().splitlines() if " WARNING " not in line]  # socket warnings come first
    assert said[0] == f"restored the baseline of jetson-nano left by pid {first.proc.pid}", second.output()
    client.join(60)
    assert "reply" in result and result["at"] > killed_at, result  # the retry, answered by the new daemon
    assert result["reply"].output.shape == (SLOW_BATCH, 10)
    with Client(second.endpoint, timeout_ms=20000, retries=0) as probe:
        assert probe.status().served == 1  # it ran the retried request itself: a fresh answer
    assert changed_files(baseline, nano_tree.snapshot_bytes())  # pinned again, by the second daemon

    second.kill9()
    done = subprocess.run([sys.executable, "-m", "governor", "restore", "--state-file", str(second.state_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"left by pid {second.proc.pid}" in done.stdout, done.stdout + done.stderr
    assert changed_files(baseline, nano_tree.snapshot_bytes()) == []
    assert not second.state_file.exists()
    figures.append("crash: 2 x kill -9 with clocks pinned (one mid-request); restart and `governor restore` "
                   "left the tree byte-identical; the in-flight request was answered only by the restarted daemon")
