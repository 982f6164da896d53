"""Another process that opens a fake tree with open_root gets the same kernel semantics and faults.

The daemon under test runs as a subprocess against a fake tree, so the semantics must not live in
the test's memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree

CHILD = textwrap.dedent(
    """
    import json, sys
    from governor.drivers._sysfs import SysfsError
    from governor.testing import open_root
    sysfs = open_root(sys.argv[1])
    cpu = "sys/devices/system/cpu/cpufreq/policy0"
    out = {"type": type(sysfs).__name__}
    def attempt(key, rel, value):
        try:
            sysfs.write(rel, value)
            out[key] = "ok"
        except SysfsError as exc:
            out[key] = f"{type(exc).__name__}:{exc.errno}"
    attempt("max", f"{cpu}/scaling_max_freq", 1000000)
    attempt("inverted", f"{cpu}/scaling_min_freq", 1479000)
    attempt("denied", "sys/kernel/debug/clk/override.emc/clk_state", 1)
    attempt("frozen", "sys/devices/system/cpu/cpu3/online", 0)
    attempt("readonly", f"{cpu}/cpuinfo_max_freq", 1)
    print(json.dumps(out))
    """
)


def test_open_root_in_a_fresh_process_keeps_semantics_and_faults(fake_dir):
    tree = make_fake_tree(load_board("jetson-nano"), fake_dir / "nano")
    tree.deny("sys/kernel/debug/clk/override.emc/clk_state")
    tree.freeze("sys/devices/system/cpu/cpu3/online")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tree.root)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {
        "type": "FakeSysfsRoot",
        "max": "ok",
        "inverted": "SysfsRejected:22",
        "denied": "SysfsPermission:13",
        "frozen": "ok",
        "readonly": "SysfsPermission:13",
    }
    assert tree.sysfs.read("sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq") == "921600"
    assert tree.sysfs.read("sys/devices/system/cpu/cpu3/online") == "1"
    assert tree.sysfs.read("sys/devices/system/cpu/online") == "0-3"
