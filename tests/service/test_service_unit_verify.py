"""The unit that install-service renders passes `systemd-analyze verify` (offline; no systemd as PID 1 needed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from governor.cli.main import main

ANALYZE = shutil.which("systemd-analyze")
pytestmark = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd); .ci/run installs it")


def verify(unit: Path) -> tuple[int, list[str]]:
    """Exit code, and the lines that name the unit (verify only warns about unknown keys, exit 0)."""
    done = subprocess.run([ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, [line for line in (done.stdout + done.stderr).splitlines() if unit.name in line]


def test_rendered_unit_verifies_cleanly(tmp_path):
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    code, complaints = verify(tmp_path / "etc/systemd/system/governor.service")
    assert (code, complaints) == (0, [])


def test_verify_catches_what_it_should(tmp_path):
    assert main(["install-service", "--prefix", str(tmp_path)]) == 0
    good = (tmp_path / "etc/systemd/system/governor.service").read_text()
    broken = tmp_path / "broken" / "governor.service"
    broken.parent.mkdir()
    broken.write_text(good.replace("ExecStart=", "ExecStart=/nonexistent/governor serve\n#", 1)
                      .replace("Restart=on-failure", "Restart=sometimes"))
    code, complaints = verify(broken)
    assert code != 0
    assert any("not executable" in line for line in complaints)
    assert any("sometimes" in line for line in complaints)
