"""`governor serve --engine external`: the application owns the engine, so the daemon loads no torch,
serves leases and advice from a profile, and refuses infer with what to do instead (issue 18.8)."""

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from governor_client import Client, GovernorError


def _governor(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "governor", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def profiled(quick_digits_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("external") / "quick-host.json"
    done = _governor("profile", str(quick_digits_model), "--board", "host", "--max-points", "8", "--quiet",
                     "--out", str(out))
    assert done.returncode == 0, done.stderr
    return quick_digits_model, out


def test_the_light_daemon_maps_no_torch_refuses_infer_and_grants_leases(profiled):
    model, profile = profiled
    with tempfile.TemporaryDirectory(prefix="gx-", dir="/tmp") as d:  # ipc paths must stay short
        endpoint = f"ipc://{d}/g.sock"
        proc = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--engine", "external", "--model",
                                 str(model), "--profile", str(profile), "--endpoint", endpoint, "--state-file",
                                 f"{d}/state.json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not Path(d, "g.sock").exists():
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
                time.sleep(0.05)
            with Client(endpoint, timeout_ms=10000, retries=0) as c:
                with pytest.raises(GovernorError) as refused:
                    c.infer(np.zeros((1, 8, 8), np.float32), deadline_ms=100)
                with c.lease(deadline_ms=100) as lease:
                    lease.report(1.5)
                advice = c.advise(deadline_ms=100)
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
        finally:
            proc.terminate()
            proc.wait(30)
    assert "libtorch" not in maps  # the point of the light daemon: no torch in its memory
    assert refused.value.code == "bad_request" and "engine = external" in str(refused.value)
    assert lease.released is not None and lease.released.measured.latency_ms == 1.5 and 1 <= lease.k <= 4
    assert 1 <= advice.point.k <= 4


def test_without_a_profile_or_a_model_it_says_what_to_do(quick_digits_model, tmp_path):
    missing = _governor("serve", "--engine", "external", "--model", str(quick_digits_model), "--profile",
                        str(tmp_path / "none.json"), "--endpoint", f"ipc://{tmp_path}/g.sock", "--state-file",
                        str(tmp_path / "s.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "none.json" in missing.stderr
    no_model = _governor("serve", "--engine", "external", "--endpoint", f"ipc://{tmp_path}/g.sock", "--state-file",
                         str(tmp_path / "s.json"))
    assert no_model.returncode == 2 and "needs --model" in no_model.stderr and "Traceback" not in no_model.stderr
