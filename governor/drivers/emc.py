"""Jetson memory controller (EMC) clock through debugfs: Hz throughout, root only.

Theory of operation
-------------------
The EMC has no cpufreq/devfreq node before JetPack 7; NVIDIA's ``jetson_clocks`` overrides it in
debugfs, and so do we, in two dialects:

* ``tegra-emc-bpmp`` (TX2, Xavier, Orin: ``bpmp/debug/clk/emc``): write ``mrq_rate_locked`` = 1,
  then the rate into ``rate``; writing 0 to ``mrq_rate_locked`` hands the clock back to BPMP.
* ``tegra-emc-t210`` (Nano: ``clk/override.emc``): the rate into ``clk_update_rate``, then
  ``clk_state`` = 1; ``clk_state`` = 0 releases the override. The current rate is the override
  clock's ``clk_rate`` and the limits are ``tegra_bwmgr/emc_{min,max}_rate``.

Neither has a range control, so :meth:`set_range` releases the override when the range spans the
whole table and otherwise holds the range's upper end (memory bandwidth rarely hurts latency).
The table comes from the catalogue. A snapshot saves the rate and the lock flag; restore writes
the rate while locked and then puts the flag back, which leaves both files as they were.
"""

from __future__ import annotations

from posixpath import dirname

from governor.core.types import DomainReading
from governor.drivers._common import DomainBase, check_owner, failed, ok, save_files
from governor.drivers.base import Baseline, Probe

__all__ = ["BpmpEmc", "T210Emc"]


class _DebugfsEmc(DomainBase):
    """The shared shape: a rate file, a lock flag, limits; subclasses name the files."""

    RATE = LOCK = CUR = ""

    def probe(self) -> Probe:
        if not self.sysfs.exists(self._f(self.LOCK)):
            return failed(
                f"no EMC override at {', '.join(self.spec.paths)}: debugfs needs root and "
                "`mount -t debugfs none /sys/kernel/debug`"
            )
        return ok(f"{self.dir}: {len(self._table)} frequencies")

    def _limits_native(self) -> tuple[int, int]:
        return self._table[0], self._table[-1]

    def read(self) -> DomainReading:
        cur = self._hz(self.sysfs.read_int(self._f(self.CUR)))
        if self.sysfs.read_int(self._f(self.LOCK)) == 1:
            return DomainReading(cur_hz=cur, min_hz=cur, max_hz=cur, governor="locked")
        lo, hi = self._limits_native()
        return DomainReading(cur_hz=cur, min_hz=self._hz(lo), max_hz=self._hz(hi), governor="")

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        lo, hi = self._native_range(min_hz, max_hz)
        if (lo, hi) == (self._table[0], self._table[-1]):
            self.sysfs.write(self._f(self.LOCK), 0)
            return self.read()
        return self.pin(self._hz(hi))

    def snapshot(self) -> Baseline:
        return save_files(self.sysfs, self.owner, [self._f(self.RATE), self._f(self.LOCK)])

    def restore(self, baseline: Baseline) -> None:
        saved = check_owner(baseline, self.owner)
        self._lock_at(saved[self._f(self.RATE)].strip())
        self.sysfs.write(self._f(self.LOCK), saved[self._f(self.LOCK)].strip())

    def pin(self, hz: int) -> DomainReading:
        self._lock_at(self._native(hz))
        return self.read()

    def _lock_at(self, rate: int | str) -> None:
        raise NotImplementedError


class BpmpEmc(_DebugfsEmc):
    """``tegra-emc-bpmp``: lock first, then the rate (the BPMP ignores rate writes while unlocked)."""

    RATE = CUR = "rate"
    LOCK = "mrq_rate_locked"

    def _limits_native(self) -> tuple[int, int]:
        return self.sysfs.read_int(self._f("min_rate")), self.sysfs.read_int(self._f("max_rate"))

    def _lock_at(self, rate: int | str) -> None:
        self.sysfs.write(self._f(self.LOCK), 1)
        self.sysfs.write(self._f(self.RATE), rate)


class T210Emc(_DebugfsEmc):
    """``tegra-emc-t210``: the rate first, then the override switch (as jetson_clocks does)."""

    RATE = "clk_update_rate"
    LOCK = "clk_state"
    CUR = "clk_rate"

    def _limits_native(self) -> tuple[int, int]:
        bwmgr = f"{dirname(dirname(self.dir))}/tegra_bwmgr"
        lo, hi = f"{bwmgr}/emc_min_rate", f"{bwmgr}/emc_max_rate"
        if self.sysfs.exists(lo) and self.sysfs.exists(hi):
            return self.sysfs.read_int(lo), self.sysfs.read_int(hi)
        return super()._limits_native()

    def _lock_at(self, rate: int | str) -> None:
        self.sysfs.write(self._f(self.RATE), rate)
        self.sysfs.write(self._f(self.LOCK), 1)
