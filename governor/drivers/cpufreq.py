"""cpufreq policies (CPU clusters): Hz at the interface, kHz in sysfs.

Theory of operation
-------------------
A policy directory (``sys/devices/system/cpu/cpufreq/policyN``) clocks every CPU in its
``related_cpus``. Pinning, range setting, read-back and restore follow
:class:`~governor.drivers._limits.LimitsDomain` on ``scaling_min_freq``/``scaling_max_freq``,
``scaling_governor`` and ``scaling_setspeed``.

The table comes from the catalogue. A host (no table in the catalogue) reads
``scaling_available_frequencies``; drivers without one (intel_pstate, amd-pstate) accept any
value, so they get a 100 MHz grid between ``cpuinfo_min_freq`` and ``cpuinfo_max_freq``.
When every CPU of a cluster is offline the policy directory stays but loses its attributes, so
the probe says DEFER (it comes back with its CPUs). On pre-4.3 layouts (``cpuK/cpufreq`` only)
the policy is reached through any online CPU of the cluster (``cpus``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from governor.core.board import Domain
from governor.drivers._common import failed, first_match, ok, parse_int
from governor.drivers._limits import LimitsDomain, Mode
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import Probe, ProbeResult

__all__ = ["POLICY_GLOB", "CpufreqPolicy", "Mode", "discover_policies", "parse_cpu_list"]

CPU_DIR = "sys/devices/system/cpu"
POLICY_GLOB = f"{CPU_DIR}/cpufreq/policy*"
_GRID_KHZ = 100_000


class CpufreqPolicy(LimitsDomain):
    """One cpufreq policy. ``mode`` picks how :meth:`pin` holds a frequency (``limits``/``userspace``)."""

    CUR, MIN, MAX = "scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"
    GOVERNOR, GOVERNORS, SETSPEED = "scaling_governor", "scaling_available_governors", "scaling_setspeed"

    def __init__(self, sysfs: SysfsRoot, spec: Domain, *, mode: Mode = "limits", cpus: Iterable[int] = ()) -> None:
        self._candidates = (*spec.paths, *(f"{CPU_DIR}/cpu{cpu}/cpufreq" for cpu in cpus))
        super().__init__(sysfs, spec, first_match(sysfs, self._candidates) or spec.paths[0], mode=mode)

    def _locate(self) -> None:
        """Follow the policy to another CPU of its cluster when this CPU's ``cpufreq`` link went away.

        Kernels before 4.3 hang the policy under each online CPU (``cpuK/cpufreq``) and drop the
        link of a CPU that goes offline, while the cluster keeps running on the others.
        """
        if not self.sysfs.exists(self.dir):
            self.dir = first_match(self.sysfs, self._candidates) or self.dir

    def probe(self) -> Probe:
        if not self.sysfs.exists(self.dir):
            return failed(f"no cpufreq policy at {', '.join(self.spec.paths)} (cpufreq driver not loaded?)")
        if not self.sysfs.exists(self._f(self.MAX)):
            return Probe(ProbeResult.DEFER, f"{self.dir} has no {self.MAX} (all its CPUs offline?)")
        if not self._table:
            self._table = self._discover_table()
        notes = [f"{len(self._table)} frequencies", self._settle_mode()]
        return ok(f"{self.dir}: " + ", ".join(n for n in notes if n))

    def _discover_table(self) -> tuple[int, ...]:
        listed = self._f("scaling_available_frequencies")
        if self.sysfs.exists(listed):
            return tuple(sorted({int(v) for v in self.sysfs.read_list(listed)}))
        lo = self.sysfs.read_int(self._f("cpuinfo_min_freq"))
        hi = self.sysfs.read_int(self._f("cpuinfo_max_freq"))
        grid = range(-(-lo // _GRID_KHZ) * _GRID_KHZ, hi + 1, _GRID_KHZ)
        return tuple(sorted({lo, *grid, hi}))

    def cpus(self) -> tuple[int, ...]:
        """CPUs this policy clocks, online or not (``related_cpus``)."""
        return parse_cpu_list(self.sysfs.read(self._f("related_cpus")))


def parse_cpu_list(text: str) -> tuple[int, ...]:
    """CPU numbers from kernel list syntax: ``"0-3,5"`` or ``"0 1 2 3"`` (related_cpus uses spaces)."""
    cpus: set[int] = set()
    for part in re.split(r"[,\s]+", text.strip()):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return tuple(sorted(cpus))


def discover_policies(sysfs: SysfsRoot, *, prefix: str = "cpu-policy") -> list[Domain]:
    """Catalogue entries for every policy on the machine (hosts with ``discover_cpufreq``).

    Named ``<prefix><N>`` after the policy number; the table is left empty so that
    :meth:`CpufreqPolicy.probe` reads it from the kernel.
    """
    found = sorted(sysfs.glob(POLICY_GLOB), key=lambda rel: parse_int(rel.rsplit("policy", 1)[1]))
    return [
        Domain(name=f"{prefix}{rel.rsplit('policy', 1)[1]}", kind="cpu", driver="cpufreq", unit="kHz", paths=(rel,))
        for rel in found
    ]
