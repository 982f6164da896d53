"""CPU hotplug through ``sys/devices/system/cpu/cpuK/online`` (root; cpu0 usually has no such file).

Theory of operation
-------------------
Only CPUs with an ``online`` file can be switched; the catalogue lists them (``hotplug_cpus``),
and a host discovers them. A new online set is applied by bringing CPUs up before taking others
down, so the machine never passes through fewer CPUs than either end state (and a cluster never
loses its last CPU in between). Every change is read back: on Jetson nvpmodel owns the online mask
and may undo it. Restore follows the same up-then-down order, and must run before the cpufreq
policies are restored, because a policy whose CPUs are all offline has no attributes to write.
"""

from __future__ import annotations

from collections.abc import Iterable

from governor.drivers._common import check_owner, failed, ok, parse_int, save_files
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import Baseline, Probe

__all__ = ["CPU_DIR", "CpuHotplug"]

CPU_DIR = "sys/devices/system/cpu"


class CpuHotplug:
    """The switchable CPUs of a board. ``cpus`` empty means: every ``cpuK/online`` found."""

    name = "hotplug"
    owner = "hotplug"

    def __init__(self, sysfs: SysfsRoot, cpus: Iterable[int] = ()) -> None:
        self.sysfs = sysfs
        self.cpus: tuple[int, ...] = tuple(sorted(cpus)) or self._discover()

    def _discover(self) -> tuple[int, ...]:
        found = self.sysfs.glob(f"{CPU_DIR}/cpu[0-9]*/online")
        return tuple(sorted(parse_int(rel.split("/")[-2][3:]) for rel in found))

    @staticmethod
    def _f(cpu: int) -> str:
        return f"{CPU_DIR}/cpu{cpu}/online"

    def probe(self) -> Probe:
        missing = [cpu for cpu in self.cpus if not self.sysfs.exists(self._f(cpu))]
        if not self.cpus:
            return failed("no CPU has an online file (hotplug not built in)")
        if missing:
            return failed(f"cpus {missing} have no online file (not hotpluggable on this kernel)")
        return ok(f"cpus {list(self.cpus)} can be switched")

    def online(self) -> frozenset[int]:
        """Switchable CPUs that are online now."""
        return frozenset(cpu for cpu in self.cpus if parse_int(self.sysfs.read(self._f(cpu))) == 1)

    def set_online(self, wanted: Iterable[int]) -> frozenset[int]:
        """Make exactly ``wanted`` (among the switchable CPUs) online; returns the read-back online set."""
        wanted = frozenset(wanted)
        stray = wanted - set(self.cpus)
        if stray:
            raise ValueError(f"cpus {sorted(stray)} cannot be switched; switchable: {list(self.cpus)}")
        self._apply({cpu: cpu in wanted for cpu in self.cpus})
        return self.online()

    def _apply(self, state: dict[int, bool]) -> None:
        for cpu in sorted(c for c, up in state.items() if up):
            self.sysfs.write(self._f(cpu), 1)
        for cpu in sorted((c for c, up in state.items() if not up), reverse=True):
            self.sysfs.write(self._f(cpu), 0)

    def snapshot(self) -> Baseline:
        return save_files(self.sysfs, self.owner, [self._f(cpu) for cpu in self.cpus])

    def restore(self, baseline: Baseline) -> None:
        saved = check_owner(baseline, self.owner)
        self._apply({int(rel.split("/")[-2][3:]): parse_int(text) == 1 for rel, text in saved.items()})
