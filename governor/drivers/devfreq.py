"""devfreq devices (Jetson GPU, Odroid Mali on devfreq kernels, memory buses): Hz throughout.

Theory of operation
-------------------
The entry is found the way jetson-stats finds the Jetson GPU: scan the catalogue ``paths`` globs
(``sys/class/devfreq/*``) and take the first entry whose ``device/of_node/name`` is one of the
catalogue's ``of_node`` names (an empty list accepts the first entry). The class entry is a
symlink; its real directory is used from then on, so snapshots name real files.

Pinning, range setting, read-back and restore follow
:class:`~governor.drivers._limits.LimitsDomain` on ``min_freq``/``max_freq``, ``governor`` and
``userspace/set_freq``. The kernel snaps a request to an OPP (950 MHz on a Nano reads back 998.4).

A GPU whose devfreq node is missing while its device (the ``load`` file) exists is rail-gated:
nvgpu registers devfreq only after power-up, so the probe says DEFER rather than FAIL.
"""

from __future__ import annotations

from governor.core.board import Domain
from governor.drivers._common import failed, ok
from governor.drivers._limits import LimitsDomain, Mode
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Probe, ProbeResult

__all__ = ["Devfreq", "find_devfreq"]


def _of_node_name(sysfs: SysfsRoot, entry: str) -> str:
    try:
        return sysfs.read(f"{entry}/device/of_node/name").strip().strip("\x00")
    except SysfsError:
        return ""


def find_devfreq(sysfs: SysfsRoot, spec: Domain) -> str | None:
    """The real directory of the devfreq entry the catalogue describes, or None."""
    for pattern in spec.paths:
        for entry in sysfs.glob(pattern):
            if not spec.of_node or _of_node_name(sysfs, entry) in spec.of_node:
                return sysfs.realpath(entry)
    return None


class Devfreq(LimitsDomain):
    """One devfreq device. ``mode`` picks how :meth:`pin` holds a frequency (``limits``/``userspace``)."""

    CUR, MIN, MAX = "cur_freq", "min_freq", "max_freq"
    GOVERNOR, GOVERNORS, SETSPEED = "governor", "available_governors", "userspace/set_freq"

    def __init__(self, sysfs: SysfsRoot, spec: Domain, *, mode: Mode = "limits") -> None:
        super().__init__(sysfs, spec, find_devfreq(sysfs, spec) or "", mode=mode)

    def probe(self) -> Probe:
        self.dir = self.dir or find_devfreq(self.sysfs, self.spec) or ""
        if not self.dir:
            wanted = f" with device/of_node/name in {list(self.spec.of_node)}" if self.spec.of_node else ""
            where = f"no devfreq entry at {', '.join(self.spec.paths)}{wanted}"
            if self.spec.load_path and self.sysfs.exists(self.spec.load_path):
                why = "the GPU is probably rail-gated (devfreq appears at power-up)"
                return Probe(ProbeResult.DEFER, f"{where}; {why}")
            return failed(where)
        if not self._table:
            self._table = tuple(sorted(int(v) for v in self.sysfs.read_list(self._f("available_frequencies"))))
        notes = [f"{len(self._table)} frequencies", self._settle_mode()]
        return ok(f"{self.dir}: " + ", ".join(n for n in notes if n))
