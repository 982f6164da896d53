"""`governor demo`: a summary that counts every request and says why some were infeasible; "met" judged from
the end-to-end time the rows print; Ctrl-C ends with one line and exit 130, the load and the daemon stopped."""

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from governor.cli import demo

SLOW = "fastest point takes 0.912 ms > deadline 0.55 ms"


def _run(args: argparse.Namespace) -> int:
    try:
        return demo.run(args)
    except KeyboardInterrupt:  # escaping, it would stop the test session itself
        pytest.fail("Ctrl-C escaped governor demo")


def test_summary_counts_every_request_and_groups_the_reasons():
    outcomes = [
        demo.Outcome(0.40, 1.0),  # feasible, met
        demo.Outcome(1.20, 1.0),  # feasible, missed: its end-to-end time is over the deadline
        demo.Outcome(0.50, 1.0, min_accuracy=0.95, accuracy=0.90),  # on time but below the floor: missed
        demo.Outcome(0.90, 0.55, infeasible=True, reason=SLOW),
        demo.Outcome(0.95, 0.61, infeasible=True, reason="fastest point takes 0.93 ms > deadline 0.61 ms"),
        demo.Outcome(0.50, 0.60, infeasible=True, reason="fastest point takes 0.7 ms > deadline 0.6 ms"),  # met anyway
        demo.Outcome(0.80, 2.0, min_accuracy=0.99, accuracy=0.98, infeasible=True,
                reason="best accuracy 0.98 < floor 0.99"),
    ]
    lines = demo.summary(outcomes, " [SIMULATED]")
    assert lines[0] == "7 requests: 2 met their budget end to end (28.6 %) [SIMULATED]"
    assert lines[1] == "  3 with a budget the daemon judged feasible: 1 met it (33.3 %)"
    assert lines[2] == "  4 the daemon judged infeasible (served best effort; 1 met anyway):"
    assert lines[3] == f"       3 x {SLOW} (and alike)"  # one cause, three sets of figures: one group, first
    assert lines[4] == "       1 x best accuracy 0.98 < floor 0.99"
    assert len(lines) == 5


def test_summary_without_infeasible_requests_says_so_plainly():
    lines = demo.summary([demo.Outcome(0.4, 1.0), demo.Outcome(0.5, 1.0)])
    assert lines == ["2 requests: 2 met their budget end to end (100.0 %)",
                     "  2 with a budget the daemon judged feasible: 2 met it (100.0 %)"]


def test_met_compares_the_printed_end_to_end_time():
    assert demo.Outcome(e2e_ms=0.999, deadline_ms=1.0).met
    assert not demo.Outcome(e2e_ms=1.001, deadline_ms=1.0).met
    assert not demo.Outcome(e2e_ms=0.5, deadline_ms=1.0, min_accuracy=0.9, accuracy=None).met


def test_background_load_runs_outside_the_terminals_reach_and_stops():
    load = demo._Load([])
    load.set(2)
    try:
        procs = list(load.procs)
        assert len(procs) == 2
        assert all(os.getsid(p.pid) != os.getsid(0) for p in procs)  # a Ctrl-C at the terminal misses them
    finally:
        load.stop()
    assert not load.procs and all(p.poll() is not None for p in procs)


_FAKE_DAEMON = """
import pathlib, signal, sys, time
state = pathlib.Path(sys.argv[1])
def stop(*_):
    state.unlink()  # as the daemon does once it has put the board back
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
state.write_text("{}")
while True:
    time.sleep(0.05)
"""


def test_ctrl_c_while_load_runs_ends_with_one_line_and_130(monkeypatch, capfd):
    started: dict[str, object] = {}

    def start(args, workdir: Path):
        state = workdir / "baseline.json"
        proc = subprocess.Popen([sys.executable, "-c", _FAKE_DAEMON, str(state)], start_new_session=True)
        deadline = time.monotonic() + 30
        while not state.exists() and time.monotonic() < deadline:  # ready: its SIGINT handler is in place
            time.sleep(0.02)
        started.update(daemon=proc, workdir=workdir)
        return proc, "ipc:///nowhere"

    class FakeClient:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

    def stream(client, args, load):
        load.set(1)
        started["load"] = list(load.procs)
        raise KeyboardInterrupt  # Ctrl-C while the background load runs

    monkeypatch.setattr(demo, "_start_daemon", start)
    monkeypatch.setattr(demo, "_connect", lambda endpoint, daemon: FakeClient())
    monkeypatch.setattr(demo, "_stream", stream)
    before = signal.getsignal(signal.SIGINT)
    args = argparse.Namespace(requests=4, endpoint=None, board="auto", model=None, load=-1, json=False)
    assert _run(args) == 130
    err = capfd.readouterr().err
    assert err.splitlines() == ["governor demo: interrupted; background load stopped, daemon stopped and board put "
                                "back"], err
    daemon = started["daemon"]
    assert isinstance(daemon, subprocess.Popen) and daemon.returncode == 0  # stopped by SIGINT, not killed
    assert all(p.poll() is not None for p in started["load"])  # type: ignore[attr-defined]
    assert not Path(str(started["workdir"])).exists()  # its socket and state went with it
    assert signal.getsignal(signal.SIGINT) is before


def test_a_daemon_that_leaves_its_baseline_is_named_with_the_restore_command(monkeypatch, capfd):
    code = 3
    seen: dict[str, Path] = {}

    def start(args, workdir: Path):
        (workdir / "baseline.json").write_text("{}")
        seen["workdir"] = workdir
        return subprocess.Popen([sys.executable, "-c", f"import sys; sys.exit({code})"]), "ipc:///nowhere"

    def connect(endpoint, daemon):
        daemon.wait()
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_start_daemon", start)
    monkeypatch.setattr(demo, "_connect", connect)
    args = argparse.Namespace(requests=4, endpoint=None, board="auto", model=None, load=-1, json=False)
    assert _run(args) == 130
    state = seen["workdir"] / "baseline.json"
    assert capfd.readouterr().err.splitlines() == [
        f"governor demo: interrupted; the daemon exited with code {code} (see its messages above); put the board "
        f"back with `governor restore --state-file {state}`"]
    assert state.exists()  # kept for that command
    state.unlink()
    seen["workdir"].rmdir()
