"""The code stays as clean as ruff's configured rules (pyproject.toml [tool.ruff]) say."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    exe = shutil.which("ruff")
    if exe is None:
        pytest.fail("ruff is missing: install the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
