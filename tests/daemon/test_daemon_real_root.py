"""A real root is opened through the drivers' own SysfsRoot and never loads the test fakes (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree
from governor.testing._marker import MARKER_NAME

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
from governor.daemon.target import open_target
target = open_target("auto", sys.argv[1])
sysfs = target.board.sysfs
print(json.dumps({"board": target.spec.name, "root_class": type(sysfs).__module__ + "." + type(sysfs).__name__,
                  "fakes_loaded": sorted(m for m in sys.modules if m.startswith("governor.testing"))}))
"""


def _open_in_fresh_process(root: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE, str(root)], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_plain_root_uses_the_drivers_root_and_never_imports_the_fakes(tmp_path):
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "root")
    (Path(tree.root) / MARKER_NAME).unlink()  # what is left is laid out as a board's / is: a real root
    seen = _open_in_fresh_process(Path(tree.root))
    assert seen == {"board": "jetson-nano", "root_class": "governor.drivers._sysfs.SysfsRoot", "fakes_loaded": []}


def test_a_fake_tree_given_as_the_root_keeps_the_fakes_kernel_semantics(tmp_path):
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "root")
    seen = _open_in_fresh_process(Path(tree.root))
    assert seen["board"] == "jetson-nano"
    assert seen["root_class"] == "governor.testing.root.FakeSysfsRoot"
    assert "governor.testing" in seen["fakes_loaded"]
