"""Physics of a simulated board: latency, power and heat as pure functions of frequencies and load.

Theory of operation
-------------------
*Latency.* A workload is, per number of active groups k, a list of layers, each with its compute
work (MACs) and DRAM traffic (bytes), as derived from layer shapes. On a unit clocked at f the
layer needs ``t_c = MACs / (f x MACs-per-cycle x efficiency x speedup(threads))`` of compute and
``t_m = bytes / min(EMC bandwidth(f_emc), unit bandwidth(f))`` of memory time. Compute and memory
overlap partly, so a layer takes the soft roofline ``(t_c^p + t_m^p)^(1/p)`` (p = 1 is a plain
sum, p -> inf the roofline max), plus a per-layer dispatch overhead; an inference adds a fixed
overhead. A co-runner holding a share s of the unit time-shares it: progress slows by ``1 - s``.

*Power.* A rail is ``static x g(T) + sum of terms``; a term belongs to one DVFS domain and is
``leak x V x g(T) + C_clock x V^2 x f x n_on + C_active x V^2 x f x activity``, with V from the
term's voltage table (the OPP table of the domain, or the rail's own curve), C in pF (mW per
V^2 GHz), ``n_on`` the powered cores (1 for non-CPU domains) and ``activity`` busy cores (or the
busy fraction, or the memory-bus utilisation for the EMC), reduced by ``stall_saving x stall``
because a core waiting on DRAM switches less. ``g(T) = 2^((T - T_ref) / doubling)`` is leakage.

*Heat.* Each node is a first-order RC: ``T -> T_amb + R x P`` with time constant tau, stepped
exactly (``exp(-dt/tau)``) so any step length is stable.

Units: Hz, seconds (``_s``) or milliseconds (``_ms``), mW, V, °C. No I/O, no clock.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = [
    "LayerWork",
    "PowerTerm",
    "RailModel",
    "RcNode",
    "RunCost",
    "UnitPerf",
    "VoltageCurve",
    "Workload",
    "leakage_gain",
    "rail_mw",
    "rc_step",
    "run_cost",
    "soft_roofline",
    "term_mw",
]


@dataclass(frozen=True)
class LayerWork:
    """One layer of one inference: multiply-accumulates and DRAM bytes moved."""

    macs: float
    bytes: float


@dataclass(frozen=True)
class Workload:
    """A network as the simulator sees it: per active-groups count k, its layers; plus a fixed overhead."""

    name: str
    layers_by_k: Mapping[int, tuple[LayerWork, ...]]
    overhead_ms: float = 0.2

    def __post_init__(self) -> None:
        if not self.layers_by_k:
            raise ValueError(f"workload {self.name!r} has no group counts")
        frozen = {int(k): tuple(v) for k, v in self.layers_by_k.items()}
        object.__setattr__(self, "layers_by_k", MappingProxyType(frozen))

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(sorted(self.layers_by_k))

    def layers(self, k: int) -> tuple[LayerWork, ...]:
        try:
            return self.layers_by_k[k]
        except KeyError:
            raise ValueError(f"workload {self.name!r} has no k={k}; it has k in {list(self.groups)}") from None

    def totals(self, k: int) -> LayerWork:
        layers = self.layers(k)
        return LayerWork(sum(x.macs for x in layers), sum(x.bytes for x in layers))


@dataclass(frozen=True)
class UnitPerf:
    """How fast a compute unit turns MACs and bytes into time.

    ``macs_per_cycle`` is per core for CPUs (``cores`` > 1) and for the whole unit for GPUs.
    ``bytes_per_cycle`` caps the DRAM bandwidth the unit itself can pull at its clock.
    """

    macs_per_cycle: float
    efficiency: float
    cores: int = 1
    parallel_fraction: float = 1.0
    overlap_p: float = 2.0
    bytes_per_cycle: float = math.inf
    layer_overhead_ms: float = 0.0


@dataclass(frozen=True)
class RunCost:
    """One inference at fixed clocks: seconds of compute, of memory, in total; bytes moved."""

    compute_s: float
    memory_s: float
    total_s: float
    bytes: float

    @property
    def stall(self) -> float:
        """Fraction of the run the unit waits on memory (drives the power model's stall saving)."""
        both = self.compute_s + self.memory_s
        return self.memory_s / both if both > 0 else 0.0


def soft_roofline(compute_s: float, memory_s: float, p: float) -> float:
    """Time of partly overlapped compute and memory: the p-norm of the two."""
    if compute_s <= 0 or memory_s <= 0:
        return max(compute_s, memory_s, 0.0)
    big = max(compute_s, memory_s)
    norm: float = ((compute_s / big) ** p + (memory_s / big) ** p) ** (1.0 / p)
    return big * norm


def _speedup(unit: UnitPerf, threads: int) -> float:
    """Amdahl speedup of ``threads`` threads on ``unit`` (GPUs: 1, their width is in macs_per_cycle)."""
    n = max(1, min(threads, unit.cores))
    return 1.0 / ((1.0 - unit.parallel_fraction) + unit.parallel_fraction / n)


def run_cost(
    workload: Workload, k: int, unit: UnitPerf, unit_hz: float, threads: int, emc_bytes_per_s: float
) -> RunCost:
    """Latency of one inference of ``workload`` at k groups on ``unit`` with nothing else running."""
    if unit_hz <= 0 or emc_bytes_per_s <= 0:
        raise ValueError(f"clocks must be positive (unit {unit_hz} Hz, EMC {emc_bytes_per_s} B/s)")
    rate = unit_hz * unit.macs_per_cycle * unit.efficiency * _speedup(unit, threads)
    bandwidth = min(emc_bytes_per_s, unit_hz * unit.bytes_per_cycle)
    compute = memory = total = moved = 0.0
    for layer in workload.layers(k):
        t_c, t_m = layer.macs / rate, layer.bytes / bandwidth
        compute, memory, moved = compute + t_c, memory + t_m, moved + layer.bytes
        total += soft_roofline(t_c, t_m, unit.overlap_p) + unit.layer_overhead_ms / 1e3
    return RunCost(compute, memory, total + workload.overhead_ms / 1e3, moved)


@dataclass(frozen=True)
class VoltageCurve:
    """Voltage (V) against frequency (Hz): linear between points, flat beyond the ends."""

    hz: tuple[float, ...]
    volts: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.hz or len(self.hz) != len(self.volts):
            raise ValueError("a voltage curve needs as many volts as frequencies, at least one")
        if any(b <= a for a, b in zip(self.hz, self.hz[1:], strict=False)):
            raise ValueError("voltage curve frequencies must ascend")

    def __call__(self, f_hz: float) -> float:
        i = bisect.bisect_left(self.hz, f_hz)
        if i == 0:
            return self.volts[0]
        if i >= len(self.hz):
            return self.volts[-1]
        f0, f1, v0, v1 = self.hz[i - 1], self.hz[i], self.volts[i - 1], self.volts[i]
        return v0 + (v1 - v0) * (f_hz - f0) / (f1 - f0)


@dataclass(frozen=True)
class PowerTerm:
    """One domain's share of a rail (see module doc). Capacitances in pF, leakage in mW per volt."""

    domain: str
    curve: VoltageCurve
    leak_mw_per_v: float = 0.0
    c_clock_pf: float = 0.0
    c_active_pf: float = 0.0
    stall_saving: float = 0.0


@dataclass(frozen=True)
class RailModel:
    """A monitored rail: static mW (temperature dependent) plus its domain terms."""

    name: str
    static_mw: float
    terms: tuple[PowerTerm, ...] = ()


def leakage_gain(temp_c: float, ref_c: float, doubling_c: float) -> float:
    """Leakage at ``temp_c`` relative to ``ref_c`` (doubles every ``doubling_c`` °C)."""
    return math.pow(2.0, (temp_c - ref_c) / doubling_c)


def term_mw(term: PowerTerm, f_hz: float, n_on: float, activity: float, stall: float, gain: float) -> float:
    """Power of one term at clock ``f_hz`` (0 = domain off), ``n_on`` powered cores, ``activity`` busy."""
    if f_hz <= 0 or n_on <= 0:
        return 0.0
    volts, ghz = term.curve(f_hz), f_hz / 1e9
    effective = max(0.0, activity) * (1.0 - term.stall_saving * min(max(stall, 0.0), 1.0))
    dynamic = volts * volts * ghz * (term.c_clock_pf * n_on + term.c_active_pf * effective)
    return term.leak_mw_per_v * volts * gain + dynamic


def rail_mw(
    rail: RailModel,
    freqs: Mapping[str, float],
    powered: Mapping[str, float],
    activity: Mapping[str, float],
    stall: Mapping[str, float],
    gain: float,
) -> float:
    """A rail's power (mW); the mappings are keyed by domain name (missing = off / idle)."""
    total = rail.static_mw * gain
    for term in rail.terms:
        d = term.domain
        total += term_mw(term, freqs.get(d, 0.0), powered.get(d, 0.0), activity.get(d, 0.0), stall.get(d, 0.0), gain)
    return total


@dataclass(frozen=True)
class RcNode:
    """A first-order thermal node: steady rise ``r_c_per_w`` x P (°C per W), time constant ``tau_s``."""

    r_c_per_w: float
    tau_s: float


def rc_step(temp_c: float, base_c: float, power_w: float, node: RcNode, dt_s: float) -> float:
    """Temperature after ``dt_s`` s of constant ``power_w`` above ``base_c`` (exact exponential step)."""
    target = base_c + node.r_c_per_w * power_w
    return target + (temp_c - target) * math.exp(-max(dt_s, 0.0) / node.tau_s)

