"""clients/examples/onnxruntime_app.py end to end: an application's own ONNX Runtime engine, one session
per k, governed by a real `governor serve` on this host through leases (issue 18.6)."""

import ast
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "clients" / "examples" / "onnxruntime_app.py"


def _run(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    work = tmp_path_factory.mktemp("ort")
    (work / "mynets.py").write_text(f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
                                    "from tests.runtime.convert_nets import Coupled\n")
    done = _run("-m", "governor", "convert", "mynets:Coupled", "--input-shape", "3,16,16", "--groups", "2",
                "--out", "app.dgm", cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "app.dgm"


@pytest.fixture(scope="module")
def endpoint(converted):
    """A real `governor serve` of the converted model on this host, for the module's tests."""
    with tempfile.TemporaryDirectory(prefix="gort-", dir="/tmp") as d:  # ipc paths must stay short
        daemon = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--model", str(converted), "--endpoint",
                                   f"ipc://{d}/g.sock", "--state-file", f"{d}/state.json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while not Path(d, "g.sock").exists():
                assert daemon.poll() is None and time.monotonic() < deadline, daemon.stdout.read()
                time.sleep(0.1)
            yield f"ipc://{d}/g.sock"
        finally:
            daemon.terminate()
            daemon.wait(30)


def test_the_example_runs_its_engine_under_leases_and_meets_the_deadlines(converted, endpoint):
    done = _run(str(APP), "--model", str(converted), "--endpoint", endpoint, "--requests", "40",
                "--period-ms", "5", "--deadline-ms", "200")
    assert done.returncode == 0, done.stderr
    assert (converted.parent / "onnx" / "app_k1.onnx").exists()  # it exported the engines itself
    summary = done.stdout.strip().splitlines()[-1]
    found = re.match(r"(\d+) leases released; deadlines met (\d+)/(\d+) accepted .*; k chosen (\{[^}]*\});", summary)
    assert found, summary
    released, met, accepted = (int(found[i]) for i in (1, 2, 3))
    chosen = ast.literal_eval(found[4])
    assert released == accepted == 40 and met >= 0.95 * 40, summary
    assert set(chosen) <= {1, 2} and sum(chosen.values()) == 40, summary  # k in 1..G, G = 2
    assert "mean |predicted - end-to-end| latency" in summary


def test_the_example_streams_its_frames_and_the_daemon_counts_them_all(converted, endpoint):
    done = _run(str(APP), "--model", str(converted), "--endpoint", endpoint, "--requests", "60",
                "--period-ms", "5", "--deadline-ms", "200", "--stream")
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    found = re.match(r"(\d+) frames streamed; deadlines met (\d+)/(\d+) .*; k chosen (\{[^}]*\}); points pushed "
                     r"(\d+); mean latency ([0-9.]+) ms", summary)
    assert found, summary
    frames, met = int(found[1]), int(found[2])
    chosen = ast.literal_eval(found[4])
    assert frames == 60 and met >= 0.95 * 60, summary  # every frame reached the daemon, in batches
    assert set(chosen) <= {1, 2} and sum(chosen.values()) == 60 and 0 < float(found[6]) < 200, summary


def test_an_asyncio_application_streams_too(endpoint):
    import asyncio

    from governor_client import AsyncClient

    async def pipeline():
        async with AsyncClient(endpoint, timeout_ms=10000) as gov, gov.stream(period_ms=5.0, deadline_ms=200.0,
                                                                               batch=8) as s:
            for _ in range(20):
                assert 1 <= s.k <= 2
                s.report(1.5)
                await asyncio.sleep(0.005)
        return s

    s = asyncio.run(asyncio.wait_for(pipeline(), 60))
    assert s.closed is not None and s.closed.frames == 20 and s.closed.met == 20
    assert s.closed.mean_latency_ms == pytest.approx(1.5)


def test_without_a_daemon_it_says_so_in_one_line(converted, tmp_path):
    done = _run(str(APP), "--model", str(converted), "--endpoint", f"ipc://{tmp_path}/none.sock", "--requests", "2")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no governor daemon" in done.stderr
