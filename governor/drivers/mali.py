"""Odroid XU3/XU4 Mali-T628 through Hardkernel's 3.10 vendor driver (``mali-vendor``): MHz in sysfs.

Theory of operation
-------------------
The Samsung midgard driver has no devfreq node; it exposes ``clock`` (current, MHz) and two lock
files, ``dvfs_min_lock`` and ``dvfs_max_lock`` (MHz). Writing the same table entry to both pins
the GPU; writing ``0`` releases a lock, and so does writing the table's bottom entry to the min
lock or its top entry to the max lock. An unlocked file reads ``-1``. Values must be exact table
entries (anything else gets ENOENT), so requests are snapped to the catalogue table first.

The driver refuses a min lock above the max lock, so the lock pair is written in the same order
as cpufreq limits (:func:`~governor.drivers._common.write_limits`), an unlocked side counting as
the table's end. Restore writes each saved lock back, ``-1`` becoming the unlock command ``0``.
"""

from __future__ import annotations

from governor.core.types import DomainReading
from governor.drivers._common import (
    DomainBase,
    check_owner,
    failed,
    ok,
    parse_int,
    save_files,
    write_limits,
)
from governor.drivers.base import Baseline, Probe

__all__ = ["MaliVendor"]

_MIN, _MAX = "dvfs_min_lock", "dvfs_max_lock"


class MaliVendor(DomainBase):
    """The vendor Mali driver's lock pair; Hz at the interface, MHz in sysfs."""

    def probe(self) -> Probe:
        missing = [leaf for leaf in ("clock", _MIN, _MAX) if not self.sysfs.exists(self._f(leaf))]
        if missing:
            return failed(f"no Mali vendor driver at {', '.join(self.spec.paths)} (missing {', '.join(missing)})")
        return ok(f"{self.dir}: {len(self._table)} frequencies")

    def _lock(self, leaf: str) -> int:
        """A lock in MHz, an unlocked side (``-1``) reported as the table's end it leaves open."""
        value = parse_int(self.sysfs.read(self._f(leaf)))
        if value > 0:
            return value
        return self._table[0] if leaf == _MIN else self._table[-1]

    def read(self) -> DomainReading:
        dvfs = self._f("dvfs")
        return DomainReading(
            cur_hz=self._hz(parse_int(self.sysfs.read(self._f("clock")))),
            min_hz=self._hz(self._lock(_MIN)),
            max_hz=self._hz(self._lock(_MAX)),
            governor=f"dvfs={self.sysfs.read(dvfs).strip()}" if self.sysfs.exists(dvfs) else "",
        )

    def pin(self, hz: int) -> DomainReading:
        mhz = self._native(hz)
        self._write_locks(mhz, mhz)
        return self.read()

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        self._write_locks(*self._native_range(min_hz, max_hz))
        return self.read()

    def _write_locks(self, lo: int | str, hi: int | str) -> None:
        write_limits(
            self.sysfs, self._f(_MIN), self._f(_MAX), lo, hi,
            current_min=self._lock(_MIN), effective=lambda rel: self._lock(rel.rsplit("/", 1)[1]),
        )

    def snapshot(self) -> Baseline:
        return save_files(self.sysfs, self.owner, [self._f(_MIN), self._f(_MAX)])

    def restore(self, baseline: Baseline) -> None:
        saved = check_owner(baseline, self.owner)
        lo, hi = (max(parse_int(saved[self._f(leaf)]), 0) for leaf in (_MIN, _MAX))
        if lo and hi:
            self._write_locks(lo, hi)
            return
        # An unlock never inverts the pair, so release first and then set the remaining lock.
        for leaf, value in ((_MIN, lo), (_MAX, hi)):
            if not value and parse_int(self.sysfs.read(self._f(leaf))) > 0:
                self.sysfs.write(self._f(leaf), 0)
        for leaf, value in ((_MIN, lo), (_MAX, hi)):
            if value:
                self.sysfs.write(self._f(leaf), value)
