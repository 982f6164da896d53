"""The min/max-limit domain shared by cpufreq policies and devfreq devices (private).

Both expose a current frequency, a ``[min, max]`` limit pair, a governor and, with the
``userspace`` governor, a setspeed file; only the file names differ. Subclasses name the files
and find the directory; this class holds a frequency in one of two ways:

* ``limits`` (default, works under any governor, what ``jetson_clocks`` does): min and max to the
  same table entry, in the order old kernels accept (:func:`~governor.drivers._common.write_limits`);
* ``userspace``: limits wide, the ``userspace`` governor, the frequency into the setspeed file.
  Probing falls back to ``limits`` where the governor or the file is missing.

Every write is followed by a read-back, which is what callers get: the kernel snaps to its
table and thermal/nvpmodel caps may hold the clock elsewhere.
"""

from __future__ import annotations

from typing import Literal

from governor.core.board import Domain
from governor.core.types import DomainReading
from governor.drivers._common import DomainBase, check_owner, save_files, write_limits
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import Baseline

__all__ = ["LimitsDomain", "Mode"]

Mode = Literal["limits", "userspace"]
_MOVING_GOVERNORS = ("schedutil", "nvhost_podgov", "simple_ondemand", "ondemand", "interactive")


class LimitsDomain(DomainBase):
    """A domain pinned through min/max limit files (see module doc). Subclasses set the leaf names."""

    CUR = MIN = MAX = GOVERNOR = GOVERNORS = SETSPEED = ""

    def __init__(self, sysfs: SysfsRoot, spec: Domain, directory: str | None = None, *, mode: Mode = "limits") -> None:
        super().__init__(sysfs, spec, directory)
        self.mode: Mode = mode

    def _offered_governors(self) -> list[str]:
        rel = self._f(self.GOVERNORS)
        return self.sysfs.read_list(rel) if self.sysfs.exists(rel) else list(self.spec.governors)

    def _settle_mode(self) -> str:
        """Fall back to ``limits`` where userspace pinning is impossible; returns a probe note."""
        if self.mode != "userspace":
            return ""
        if "userspace" in self._offered_governors() and self.sysfs.exists(self._f(self.SETSPEED)):
            return "pinning with the userspace governor"
        self.mode = "limits"
        return f"userspace governor or {self.SETSPEED} missing: pinning by limits"

    def _locate(self) -> None:
        """Called before every operation; subclasses whose directory can move re-resolve it here."""

    def read(self) -> DomainReading:
        self._locate()
        return DomainReading(
            cur_hz=self._hz(self.sysfs.read_int(self._f(self.CUR))),
            min_hz=self._hz(self.sysfs.read_int(self._f(self.MIN))),
            max_hz=self._hz(self.sysfs.read_int(self._f(self.MAX))),
            governor=self._governor(),
        )

    def _governor(self) -> str:
        return self.sysfs.read(self._f(self.GOVERNOR)).strip()

    def pin(self, hz: int) -> DomainReading:
        self._locate()
        native = self._native(hz)
        if self.mode == "userspace":
            self._write_limits(self._table[0], self._table[-1])
            self.sysfs.write(self._f(self.GOVERNOR), "userspace")
            self.sysfs.write(self._f(self.SETSPEED), native)
        else:
            self._write_limits(native, native)
        return self.read()

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        self._locate()
        lo, hi = self._native_range(min_hz, max_hz)
        if self.mode == "userspace" and self._governor() == "userspace":
            self.sysfs.write(self._f(self.GOVERNOR), self._moving_governor())
        self._write_limits(lo, hi)
        return self.read()

    def _moving_governor(self) -> str:
        """A governor that moves the clock by itself: the catalogue default, else a common one offered."""
        offered = self._offered_governors()
        for cand in (self.spec.default_governor, *_MOVING_GOVERNORS):
            if cand and cand in offered:
                return cand
        return next(g for g in offered if g != "userspace")

    def _write_limits(self, lo: int | str, hi: int | str) -> None:
        current_min = self.sysfs.read_int(self._f(self.MIN))
        write_limits(self.sysfs, self._f(self.MIN), self._f(self.MAX), lo, hi, current_min=current_min)

    def snapshot(self) -> Baseline:
        self._locate()
        leaves = [self.MIN, self.MAX, self.GOVERNOR]
        if self._governor() == "userspace" and self.sysfs.exists(self._f(self.SETSPEED)):
            leaves.append(self.SETSPEED)
        return save_files(self.sysfs, self.owner, [self._f(leaf) for leaf in leaves])

    def restore(self, baseline: Baseline) -> None:
        """Limits first (ordered), then the governor, then the setspeed value it was holding.

        Files are matched by leaf name, so a baseline taken through another CPU's ``cpufreq``
        directory of the same policy (old kernels move it with hotplug) still applies.
        """
        self._locate()
        saved = {leaf: text.strip() for leaf, text in self._by_leaf(check_owner(baseline, self.owner)).items()}
        self._write_limits(saved[self.MIN], saved[self.MAX])
        self.sysfs.write(self._f(self.GOVERNOR), saved[self.GOVERNOR])
        if self.SETSPEED in saved:
            self.sysfs.write(self._f(self.SETSPEED), saved[self.SETSPEED])

    def _by_leaf(self, files: dict[str, str]) -> dict[str, str]:
        leaves = (self.MIN, self.MAX, self.GOVERNOR, self.SETSPEED)
        return {leaf: text for rel, text in files.items() for leaf in leaves if rel.endswith(f"/{leaf}")}
