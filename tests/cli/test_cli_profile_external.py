"""`governor profile MODEL --external NAME`: the application runs its own engine, the profiler sets each
point and learns from the times the application reports; the profile is served under NAME (issue 18.4)."""

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from governor_client import Client, GovernorError

BOARD = "sim:jetson-nano"


def _app(endpoint, speed, seen, stop_after=None):
    """A stand-in engine: k groups take speed * k ms, whatever the clocks (a fixed, fast accelerator)."""
    deadline = time.monotonic() + 60
    while not Path(endpoint[len("ipc://"):]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    with Client(endpoint, timeout_ms=60000, retries=0) as c:
        for task in c.profile_session():
            seen.append(task)
            if stop_after is not None and len(seen) >= stop_after:
                task.fail()
                continue
            task.report(speed * task.k)


def _profile(args, endpoint):
    return subprocess.Popen([sys.executable, "-m", "governor", "profile", *args, "--endpoint", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def session_dir():
    with tempfile.TemporaryDirectory(prefix="gpe-", dir="/tmp") as d:  # ipc paths must stay short
        yield Path(d)


def test_an_application_drives_the_session_and_the_profile_is_its_engine(quick_digits_model, session_dir):
    out, endpoint = session_dir / "det.json", f"ipc://{session_dir}/p.sock"
    proc = _profile([str(quick_digits_model), "--board", BOARD, "--external", "det", "--mappings", "gpu",
                     "--max-points", "10", "--quiet", "--out", str(out)], endpoint)
    seen: list = []
    app = threading.Thread(target=_app, args=(endpoint, 2.0, seen))
    app.start()
    stdout, stderr = proc.communicate(timeout=240)
    app.join(30)
    assert proc.returncode == 0, stderr
    assert "profiling session for det" in stdout and "--engine external" in stdout
    doc = json.loads(out.read_text())
    assert doc["model"] == "det"
    measured = doc["points"]
    assert 4 <= len(measured) <= 10 and len(seen) >= len(measured)
    # the profile is the application's engine: 2 ms per group whatever the clocks
    for row in measured:
        assert row["latency_ms"] == pytest.approx(2.0 * row["groups"], rel=1e-6)
    assert {task.point.mapping.unit for task in seen} == {"gpu"}


def test_a_failed_run_stops_the_session_and_writes_nothing(quick_digits_model, session_dir):
    out, endpoint = session_dir / "det.json", f"ipc://{session_dir}/p.sock"
    proc = _profile([str(quick_digits_model), "--board", BOARD, "--external", "det", "--mappings", "gpu",
                     "--max-points", "10", "--quiet", "--out", str(out)], endpoint)
    seen: list = []
    app = threading.Thread(target=_app, args=(endpoint, 2.0, seen, 3))
    app.start()
    _stdout, stderr = proc.communicate(timeout=240)
    app.join(30)
    assert proc.returncode == 2 and "failed run" in stderr and "Traceback" not in stderr
    assert not out.exists() and len(seen) == 3


def test_the_daemon_refuses_profile_next_and_the_session_refuses_other_requests(quick_digits_model, session_dir):
    endpoint = f"ipc://{session_dir}/p.sock"
    proc = _profile([str(quick_digits_model), "--board", BOARD, "--external", "det", "--mappings", "gpu",
                     "--max-points", "4", "--quiet", "--wait-s", "5", "--out", str(session_dir / "x.json")],
                    endpoint)
    try:
        deadline = time.monotonic() + 60
        while not (session_dir / "p.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with Client(endpoint, timeout_ms=10000, retries=0) as c, \
                pytest.raises(GovernorError, match="profiling session"):
            c.advise(deadline_ms=10)
        _stdout, stderr = proc.communicate(timeout=60)  # nobody sends profile_next: it gives up after 5 s
        assert proc.returncode == 2 and "waited 5 s" in stderr
    finally:
        proc.kill()


def test_the_profile_is_served_under_its_name_by_a_light_daemon(quick_digits_model, session_dir):
    out, endpoint = session_dir / "det.json", f"ipc://{session_dir}/p.sock"
    proc = _profile([str(quick_digits_model), "--board", BOARD, "--external", "det", "--mappings", "gpu",
                     "--max-points", "6", "--quiet", "--out", str(out)], endpoint)
    app = threading.Thread(target=_app, args=(endpoint, 3.0, []))
    app.start()
    proc.communicate(timeout=240)
    app.join(30)
    serve_at = f"ipc://{session_dir}/g.sock"
    daemon = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--engine", "external", "--board", BOARD,
                               "--model", str(quick_digits_model), "--profile", str(out), "--endpoint", serve_at,
                               "--state-file", str(session_dir / "state.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (session_dir / "g.sock").exists():
            assert daemon.poll() is None and time.monotonic() < deadline, daemon.stdout.read()
            time.sleep(0.05)
        with Client(serve_at, timeout_ms=10000, retries=0) as c:
            assert c.hello.model == "det"
            for _ in range(2):
                with c.lease(deadline_ms=20, model="det") as lease:  # the issue's own example
                    lease.report(3.0 * lease.k)
            # the table is the profile's engine, not torch's; advice pays neither the switch from idle clocks
            # nor the time around a lease, which a lease's own prediction does
            advice = c.advise(deadline_ms=20, model="det")
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert lease.released is not None and lease.point.mapping.unit == "gpu"
    assert advice.predicted.latency_ms == pytest.approx(3.0 * advice.point.k, rel=0.2)
    assert lease.predicted.latency_ms >= 3.0 * lease.k
