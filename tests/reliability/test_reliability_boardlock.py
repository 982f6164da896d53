"""Real `governor serve` daemons on one fake Jetson Nano: one daemon per board, no restore under a live
one (issue 20.4), and a restore that fails at exit (issue 20.8).

Each daemon is a subprocess with its own socket and state file; every wait is bounded. Before the
board lock, a second daemon on another socket started and saved the first one's pinned clocks as
its baseline, and `governor restore` reset the live daemon's clocks and deleted its state file, so
a kill -9 of that daemon then left the board pinned with "nothing to restore".
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from governor_client import Client
from reliability_helpers import BOARD, changed_files, wait_for

from benchmarks.soak import DaemonProcess, start_daemon

CPU = "sys/devices/system/cpu/cpufreq/policy0"
KEEP = '[policy]\nidle_clocks = "keep"\n'  # the clocks stay pinned after a request, as under steady traffic
X = np.zeros((1, 1, 8, 8), np.float32)


@pytest.fixture
def daemons():
    started: list[DaemonProcess] = []

    def start(*args, **kwargs) -> DaemonProcess:
        started.append(start_daemon(*args, **kwargs))
        return started[-1]

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.kill9()


def restore(state_file) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "governor", "restore", "--state-file", str(state_file)],
                          capture_output=True, text=True, timeout=120)


def pin_with_a_request(daemon: DaemonProcess, tree, baseline) -> dict[str, bytes]:
    daemon.wait_serving()
    with Client(daemon.endpoint, timeout_ms=20000, retries=0) as client:
        client.infer(X, deadline_ms=500)
    wait_for(lambda: changed_files(baseline, tree.snapshot_bytes()), 30, "the daemon to pin clocks")
    return tree.snapshot_bytes()


def test_reliability_one_daemon_per_board_and_no_restore_under_it(nano_tree, quick_model, profiled_state, scratch,
                                                                  daemons, figures):
    baseline = nano_tree.snapshot_bytes()
    first = daemons(scratch("gr-l1-"), nano_tree.root, quick_model, profiled_state, board=BOARD, config_text=KEEP,
                    name="first")
    pinned = pin_with_a_request(first, nano_tree, baseline)

    second = daemons(scratch("gr-l2-"), nano_tree.root, quick_model, profiled_state, board=BOARD, name="second")
    wait_for(lambda: second.proc.poll() is not None or "serving on" in second.output(), 120, "the second daemon")
    assert second.proc.poll() == 2, second.output()  # refused at start, before reading or writing anything
    out = second.output()
    assert f"pid {first.proc.pid}" in out and f"kill {first.proc.pid}" in out and "Traceback" not in out, out
    assert not second.state_file.exists()

    done = restore(first.state_file)
    assert done.returncode == 2 and f"pid {first.proc.pid}" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert nano_tree.snapshot_bytes() == pinned and first.state_file.exists()  # nothing reset under it

    first.kill9()  # the kernel frees the board lock; the state file still holds the true baseline
    done = restore(first.state_file)
    assert done.returncode == 0 and f"left by pid {first.proc.pid}" in done.stdout, done.stdout + done.stderr
    assert changed_files(baseline, nano_tree.snapshot_bytes()) == [] and not first.state_file.exists()
    figures.append("board lock: a second daemon and `governor restore` refused while the first lived (pid named); "
                   "after its kill -9, restore left the tree byte-identical")


def test_reliability_restore_failing_at_exit_says_what_stays_pinned(nano_tree, quick_model, profiled_state, scratch,
                                                                   daemons, figures):
    baseline = nano_tree.snapshot_bytes()
    daemon = daemons(scratch("gr-l3-"), nano_tree.root, quick_model, profiled_state, board=BOARD, config_text=KEEP)
    pin_with_a_request(daemon, nano_tree, baseline)
    for leaf in ("scaling_min_freq", "scaling_max_freq"):
        nano_tree.fail_writes(f"{CPU}/{leaf}", 5)  # EIO through the shutdown
    assert daemon.terminate(60) == 1
    out = daemon.output()
    assert "Traceback" not in out, out  # it used to end in a RestoreError traceback
    line = next(line for line in out.splitlines() if "still pinned" in line)
    assert "cpu" in line and f"governor restore --state-file {daemon.state_file}" in line, line
    assert daemon.state_file.exists()
    assert changed_files(baseline, nano_tree.snapshot_bytes())
    nano_tree.clear_faults()
    done = restore(daemon.state_file)
    assert done.returncode == 0, done.stdout + done.stderr
    assert changed_files(baseline, nano_tree.snapshot_bytes()) == [] and not daemon.state_file.exists()
    figures.append("restore failing at exit (CPU writes EIO): one line naming the CPU and the command, exit 1, "
                   "state file kept; `governor restore` after the fault cleared left the tree byte-identical")
