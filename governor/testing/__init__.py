"""Public fakes: fake sysfs/procfs/debugfs trees of catalogue boards with real kernel write semantics.

::

    from governor.testing import make_fake_tree, open_root
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "root")
    tree.sysfs.write("sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq", 921600)
    sysfs = open_root(tmp_path / "root")   # in any process: same semantics, same faults

Everything in a fake tree is simulated; nothing read from one may be reported as measured.
``tree_from_probe_report(report, dir)`` turns a real board's ``governor probe-report`` into a tree.
"""

from governor.testing.rebuild import RebuiltTree, tree_from_probe_report
from governor.testing.root import FakeSysfsRoot, open_root
from governor.testing.tree import VARIANTS, FakeTree, make_fake_tree

__all__ = [
    "VARIANTS",
    "FakeSysfsRoot",
    "FakeTree",
    "RebuiltTree",
    "make_fake_tree",
    "open_root",
    "tree_from_probe_report",
]
