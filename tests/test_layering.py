"""The import layering of DEVELOPERS.md, checked by import-linter's contracts in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: install the dev extra (pip install -e '.[dev]')")
    proc = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout


def test_core_imports_without_torch_or_zmq():
    code = (
        "import sys, governor.core.board, governor.core.types\n"
        "import pkgutil, importlib, governor.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'governor.core.'): importlib.import_module(m.name)\n"
        "bad = [m for m in ('torch', 'zmq') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
