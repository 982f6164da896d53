"""Utilisation per compute unit, as a busy fraction 0..1 since the previous read.

Theory of operation
-------------------
CPU clusters: ``proc/stat`` holds cumulative jiffies per CPU; busy = total - idle - iowait over
the first eight fields (guest time is already inside user). A cluster's load is its CPUs' busy
delta over their total delta, so an idle core dilutes a busy one exactly as the scheduler sees
it. Offline CPUs are absent from ``proc/stat``; a CPU must appear in both sweeps to count (jtop
resets its estimator when the online mask changes for the same reason), and a cluster with no
such CPU is reported unavailable rather than idle. A unit without a CPU list (a generic host)
uses the aggregate ``cpu`` line. The first read covers the time since :meth:`probe`.

Jetson GPU: nvgpu's ``load`` file is per-mille (0..1000) of the last sampling window. It lives on
the GPU device itself, which nvgpu also links as ``gpu.0`` from the device's parent (and, on
kernels after 4.14, from one level up: nvgpu ``os/linux/sysfs.c``). Public sources disagree on
the Xavier NX JetPack 5 path, so the probe tries, in order, the catalogue's ``load_path`` and
:data:`GPU_LOAD_CANDIDATES` (the last one is jetson-stats' way: the devfreq entry's ``device``);
``found_at`` and ``tried`` say which was read and what was tried (``governor status`` shows them).

Odroid XU3 GPU (Hardkernel 3.10, Samsung's midgard platform code): the vendor driver's
``utilization`` file is a percent (0..100), the DVFS handler's last utilisation figure (0 while
powered off, -1 from a driver built without DVFS); read as per-mille a busy GPU would show a tenth
of its load. It sits beside ``clock`` in the domain's directory: ``utilization`` in each of the
domain's ``paths`` is tried in order (a ``load_path`` first, where the catalogue gives one);
``found_at`` and ``tried`` say which was read (``governor status --explain`` prints them).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from governor.core.board import ComputeUnit, Domain
from governor.drivers._common import Partial, failed, ok, parse_int, sweep
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import Probe

__all__ = ["GPU_LOAD_CANDIDATES", "PROC_STAT", "CpuLoad", "GpuLoad", "MaliLoad", "parse_proc_stat"]

PROC_STAT = "proc/stat"
ALL_CPUS = "cpu"
# Where nvgpu's load file may be, tried after the catalogue's load_path (globs, in this order).
GPU_LOAD_CANDIDATES = (
    "sys/devices/gpu.0/load",
    "sys/devices/platform/gpu.0/load",
    "sys/devices/platform/17000000.gv11b/load",
    "sys/class/devfreq/*/device/load",
)

Jiffies = dict[str, tuple[int, int]]  # "cpuN" (or "cpu") -> (busy, total)


def parse_proc_stat(text: str) -> Jiffies:
    """(busy, total) jiffies per ``cpuN`` line and for the aggregate ``cpu`` line."""
    out: Jiffies = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu"):
            continue
        ticks = [int(v) for v in fields[1:9]]
        total = sum(ticks)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        out[fields[0]] = (total - idle, total)
    return out


class CpuLoad:
    """Busy fraction of each CPU compute unit from ``proc/stat`` deltas."""

    name = "cpu-load"

    def __init__(self, sysfs: SysfsRoot, units: Sequence[ComputeUnit]) -> None:
        self.sysfs = sysfs
        self.units = tuple(u for u in units if u.kind == "cpu")
        self._last: Jiffies = {}

    def probe(self) -> Probe:
        if not self.units:
            return failed("the board has no CPU compute unit")
        if not self.sysfs.exists(PROC_STAT):
            return failed(f"{PROC_STAT} is missing (procfs not mounted under the root?)")
        self._last = parse_proc_stat(self.sysfs.read(PROC_STAT))
        return ok(f"units {', '.join(u.name for u in self.units)}")

    def read_partial(self) -> Partial:
        try:
            now = parse_proc_stat(self.sysfs.read(PROC_STAT))
        except (OSError, ValueError) as exc:
            return Partial({}, {u.name: str(exc) for u in self.units})
        before, self._last = self._last, now
        return sweep({u.name: partial(self._unit, u, before, now) for u in self.units})

    @staticmethod
    def _unit(unit: ComputeUnit, before: Jiffies, now: Jiffies) -> float:
        keys = [f"cpu{c}" for c in unit.cpus] if unit.cpus else [ALL_CPUS]
        both = [k for k in keys if k in before and k in now]
        if not both:
            raise ValueError(f"cpus {list(unit.cpus)} were offline during the interval")
        busy = sum(now[k][0] - before[k][0] for k in both)
        total = sum(now[k][1] - before[k][1] for k in both)
        return min(max(busy / total, 0.0), 1.0) if total > 0 else 0.0

    def read_util(self) -> dict[str, float]:
        return dict(self.read_partial().values)


class GpuLoad:
    """A Jetson GPU's ``load`` file (per-mille) as a fraction, for one compute unit.

    ``tried`` lists the candidates in probe order; ``found_at`` is the one read ("" until found).
    """

    def __init__(self, sysfs: SysfsRoot, unit: str, load_path: str) -> None:
        self.sysfs = sysfs
        self.unit = unit
        self.tried: tuple[str, ...] = tuple(dict.fromkeys(p for p in (load_path, *GPU_LOAD_CANDIDATES) if p))
        self.found_at = ""
        self.load_path = load_path
        self.name = f"gpu-load:{unit}"

    def probe(self) -> Probe:
        i = 0
        for i, pattern in enumerate(self.tried):  # noqa: B007 (i says how many were passed over)
            hits = self.sysfs.glob(pattern)
            if hits:
                self.found_at = self.load_path = hits[0]
                break
        else:
            return failed(f"no GPU load file; tried {', '.join(self.tried)}")
        real = self.sysfs.realpath(self.found_at)
        notes = [self.found_at + (f" (= {real})" if real != self.found_at else "")]
        if i:
            notes.append(f"not at {', '.join(self.tried[:i])}")
        return ok("; ".join(notes))

    def read_partial(self) -> Partial:
        return sweep({self.unit: self._fraction})

    def _fraction(self) -> float:
        return min(max(parse_int(self.sysfs.read(self.found_at or self.load_path)) / 1000, 0.0), 1.0)

    def read_util(self) -> dict[str, float]:
        return dict(self.read_partial().values)


class MaliLoad:
    """The Exynos Mali vendor driver's ``utilization`` file (percent, 0..100) as a fraction, for one unit."""

    def __init__(self, sysfs: SysfsRoot, unit: str, domain: Domain) -> None:
        self.sysfs = sysfs
        self.unit = unit
        self.name = f"gpu-load:{unit}"
        candidates = ([domain.load_path] if domain.load_path else []) + [f"{p}/utilization" for p in domain.paths]
        self.tried: tuple[str, ...] = tuple(dict.fromkeys(candidates))
        self.found_at = ""

    def probe(self) -> Probe:
        self.found_at = next((c for pattern in self.tried for c in self.sysfs.glob(pattern)), "")
        if not self.found_at:
            return failed(f"no Mali utilization file at {', '.join(self.tried)}")
        return ok(f"{self.found_at} (percent)")

    def read_partial(self) -> Partial:
        return sweep({self.unit: self._fraction})

    def _fraction(self) -> float:
        percent = parse_int(self.sysfs.read(self.found_at))
        if percent < 0:  # the T6xx driver prints -1 when built without its DVFS loop
            raise ValueError(f"{self.found_at} reads {percent}: the Mali driver keeps no utilisation (DVFS off)")
        return min(percent / 100, 1.0)

    def read_util(self) -> dict[str, float]:
        return dict(self.read_partial().values)
