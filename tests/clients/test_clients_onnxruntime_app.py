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


def test_the_example_runs_its_engine_under_leases_and_meets_the_deadlines(converted):
    with tempfile.TemporaryDirectory(prefix="gort-", dir="/tmp") as d:  # ipc paths must stay short
        endpoint = f"ipc://{d}/g.sock"
        daemon = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--model", str(converted), "--endpoint",
                                   endpoint, "--state-file", f"{d}/state.json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 120
            while not Path(d, "g.sock").exists():
                assert daemon.poll() is None and time.monotonic() < deadline, daemon.stdout.read()
                time.sleep(0.1)
            done = _run(str(APP), "--model", str(converted), "--endpoint", endpoint, "--requests", "40",
                        "--period-ms", "5", "--deadline-ms", "200")
        finally:
            daemon.terminate()
            daemon.wait(30)
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


def test_without_a_daemon_it_says_so_in_one_line(converted, tmp_path):
    done = _run(str(APP), "--model", str(converted), "--endpoint", f"ipc://{tmp_path}/none.sock", "--requests", "2")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "no governor daemon" in done.stderr
