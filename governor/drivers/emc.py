"""Jetson memory controller (EMC) clock through debugfs: Hz throughout, root only.

Theory of operation
-------------------
The EMC has no cpufreq/devfreq node before JetPack 7; NVIDIA's ``jetson_clocks`` overrides it in
debugfs, and so do we, in two dialects:

* ``tegra-emc-bpmp`` (TX2, Xavier, Orin: ``bpmp/debug/clk/emc``): write ``mrq_rate_locked`` = 1,
  then the rate into ``rate``; writing 0 to ``mrq_rate_locked`` hands the clock back to BPMP.
* ``tegra-emc-t210`` (Nano: ``clk/override.emc``): the rate into ``clk_update_rate``, then
  ``clk_state`` = 1; ``clk_state`` = 0 releases the override. The current rate is the override
  clock's ``clk_rate`` and the limits are ``tegra_bwmgr/emc_{min,max}_rate``. In the L4T kernel
  (``drivers/clk/tegra/clk.c``, ``tegra_clk_debugfs_add``) ``clk_update_rate`` is write-only (0200)
  and its read op is the state's, so reading it gives 0/1, never a rate; ``clk_state`` writes are
  the counted ``clk_prepare_enable`` / ``clk_disable_unprepare``. So the state is written only
  when it differs (as jetson_clocks does): every pin writing 1 would stack enables that one 0
  never undoes, and the override would stay on after release (*inferred* from the source).
  A snapshot saves ``clk_rate`` and ``clk_state``, never ``clk_update_rate``.

Neither has a range control, so :meth:`set_range` releases the override when the range spans the
whole table and otherwise holds the range's upper end (memory bandwidth rarely hurts latency).
The table comes from the catalogue. nvpmodel's ``emc_iso_cap`` (Hz, 0 = no cap), where present,
is the real top: jetson_clocks writes it instead of ``max_rate`` when it is set, and so does
:meth:`pin` for anything above it. A bpmp snapshot saves the rate and the lock flag; restore
writes the rate while locked and then puts the flag back, which leaves both files as they were.
"""

from __future__ import annotations

from posixpath import dirname

from governor.core.types import DomainReading
from governor.drivers._common import DomainBase, check_owner, failed, ok, save_files
from governor.drivers.base import Baseline, Probe

__all__ = ["EMC_ISO_CAP", "BpmpEmc", "T210Emc"]

EMC_ISO_CAP = "sys/kernel/nvpmodel_emc_cap/emc_iso_cap"  # Hz; 0 when the nvpmodel mode sets no cap


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
        return self._table[0], self._capped(self._table[-1])

    def _iso_cap(self) -> int:
        """nvpmodel's EMC cap in the native unit (Hz), 0 when absent, unreadable or unset."""
        try:
            return self.sysfs.read_int(EMC_ISO_CAP) if self.sysfs.exists(EMC_ISO_CAP) else 0
        except (OSError, ValueError):
            return 0

    def _capped(self, native: int) -> int:
        cap = self._iso_cap()
        return min(native, cap) if cap > 0 else native

    def read(self) -> DomainReading:
        cur = self._hz(self.sysfs.read_int(self._f(self.CUR)))
        if self.sysfs.read_int(self._f(self.LOCK)) == 1:
            return DomainReading(cur_hz=cur, min_hz=cur, max_hz=cur, governor="locked")
        lo, hi = self._limits_native()
        return DomainReading(cur_hz=cur, min_hz=self._hz(lo), max_hz=self._hz(hi), governor="")

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        lo, hi = self._native_range(min_hz, max_hz)
        if (lo, hi) == (self._table[0], self._table[-1]):
            self._release()
            return self.read()
        return self.pin(self._hz(hi))

    def _release(self) -> None:
        self.sysfs.write(self._f(self.LOCK), 0)

    def snapshot(self) -> Baseline:
        return save_files(self.sysfs, self.owner, [self._f(self.RATE), self._f(self.LOCK)])

    def restore(self, baseline: Baseline) -> None:
        saved = check_owner(baseline, self.owner)
        self._lock_at(saved[self._f(self.RATE)].strip())
        self.sysfs.write(self._f(self.LOCK), saved[self._f(self.LOCK)].strip())

    def pin(self, hz: int) -> DomainReading:
        self._lock_at(self._capped(self._native(hz)))
        return self.read()

    def _lock_at(self, rate: int | str) -> None:
        raise NotImplementedError


class BpmpEmc(_DebugfsEmc):
    """``tegra-emc-bpmp``: lock first, then the rate (the BPMP ignores rate writes while unlocked)."""

    RATE = CUR = "rate"
    LOCK = "mrq_rate_locked"

    def _limits_native(self) -> tuple[int, int]:
        return self.sysfs.read_int(self._f("min_rate")), self._capped(self.sysfs.read_int(self._f("max_rate")))

    def _lock_at(self, rate: int | str) -> None:
        self.sysfs.write(self._f(self.LOCK), 1)
        self.sysfs.write(self._f(self.RATE), rate)


class T210Emc(_DebugfsEmc):
    """``tegra-emc-t210``: the rate first, then the override switch, written only when it differs."""

    RATE = "clk_update_rate"
    LOCK = "clk_state"
    CUR = "clk_rate"

    def _limits_native(self) -> tuple[int, int]:
        bwmgr = f"{dirname(dirname(self.dir))}/tegra_bwmgr"
        lo, hi = f"{bwmgr}/emc_min_rate", f"{bwmgr}/emc_max_rate"
        if self.sysfs.exists(lo) and self.sysfs.exists(hi):
            return self.sysfs.read_int(lo), self._capped(self.sysfs.read_int(hi))
        return super()._limits_native()

    def snapshot(self) -> Baseline:
        # clk_update_rate reads back the on/off state, not a rate: the rate is clk_rate's.
        return save_files(self.sysfs, self.owner, [self._f(self.CUR), self._f(self.LOCK)])

    def restore(self, baseline: Baseline) -> None:
        saved = check_owner(baseline, self.owner)
        if saved[self._f(self.LOCK)].strip() != "1":
            self._release()
            return
        rate = saved.get(self._f(self.CUR), "").strip()
        if rate.isdigit() and int(rate) > 0:  # someone held the override: hold it again at their rate
            self.sysfs.write(self._f(self.RATE), rate)
        self._switch(1)

    def _release(self) -> None:
        self._switch(0)

    def _switch(self, on: int) -> None:
        """``clk_state`` is a counted enable: write it only when it differs, as jetson_clocks does."""
        if self.sysfs.read_int(self._f(self.LOCK)) != on:
            self.sysfs.write(self._f(self.LOCK), on)

    def _lock_at(self, rate: int | str) -> None:
        self.sysfs.write(self._f(self.RATE), rate)
        self._switch(1)
