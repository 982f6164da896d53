"""The physical parameters of one simulated board, derived from its catalogue entry.

Theory of operation
-------------------
:func:`board_physics` reads the catalogue (units, domains with OPP tables and, where given,
voltages; rails with what they supply) and the board's public figures
(:mod:`governor.sim.figures`), and builds what :mod:`governor.sim.engine` runs:

* one :class:`~governor.core.physics.UnitPerf` per compute unit (SIMD width by core name, CUDA
  core count parsed from the GPU description);
* one :class:`~governor.core.physics.PowerTerm` per DVFS domain, its capacitance chosen so that a
  full load at the top OPP draws the public figure, placed on the rail whose ``supplies`` name the
  domain's unit (``ddr``/``mem`` take the EMC, ``soc``/``io`` get static power); terms no rail
  supplies go to a hidden rail, which still heats the chip and counts in the input rail;
* an input rail (``VDD_IN``-like) = base + gain x every other rail, base chosen so an idle board
  draws its public idle figure.

The TX2 instead takes its rails and input rail from the fit on the real grids
(``governor/sim/data/jetson-tx2-power.json``, written by ``benchmarks/sim_calibration.py``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources

from governor.core.board import BoardSpec, ComputeUnit, Domain
from governor.core.physics import PowerTerm, RailModel, RcNode, UnitPerf, VoltageCurve, rail_mw
from governor.drivers.power import INPUT_RAILS
from governor.sim.calibrate import Tx2Fit, rail_models
from governor.sim.figures import BoardFigures, core_perf, figures_for

__all__ = ["DRAM", "TX2_FIT_RESOURCE", "BoardPhysics", "InputRail", "ThermalParams", "board_physics", "load_tx2_fit"]

TX2_FIT_RESOURCE = "data/jetson-tx2-power.json"
DRAM = "dram"  # the memory pseudo-domain of a board without an EMC domain (fixed clock)
_GENERIC_VOLTS = {"cpu": (0.80, 1.10, 0.55), "gpu": (0.70, 1.05, 0.60), "emc": (0.80, 1.20, 0.65),
                  "dla": (0.70, 1.05, 0.60)}  # (V at bottom, V at top, knee as a fraction of the top clock)
_MEMORY_WORDS, _STATIC_WORDS = ("ddr", "mem", "dram", "emc"), {"soc": 1.0, "io": 0.0, "cv": 0.0}


@dataclass(frozen=True)
class InputRail:
    """A board input rail: ``base_mw`` + ``gain`` x the sum of the rails named in ``sums``."""

    name: str
    base_mw: float
    gain: float
    sums: tuple[str, ...]


@dataclass(frozen=True)
class ThermalParams:
    """Package RC node heated by the whole chip; a local node per zone heated by its own unit."""

    ambient_c: float
    package: RcNode
    local: RcNode
    poll_s: float = 0.25  # how often the passive cooling governor re-evaluates (Tegra: 250 ms-1 s)
    hysteresis_c: float = 3.0
    board_fraction: float = 0.6  # a board sensor sits this far from ambient towards the package
    pmic_c: float = 50.0  # the Tegra PMIC die zone reads a constant (the shared tegrastats logs: 50 °C)
    fan: RcNode | None = None  # the package node while the fan runs
    fan_on_c: float = math.inf  # fan starts here; stops 5 °C below


@dataclass(frozen=True)
class BoardPhysics:
    name: str
    units: Mapping[str, UnitPerf]
    rails: tuple[RailModel, ...]  # monitored channels other than the input rail
    hidden: tuple[RailModel, ...]  # consumers no sensor sees
    input_rail: InputRail | None
    emc_domain: str  # the EMC domain, or "" (then DRAM runs at fixed_emc_hz as the pseudo-domain DRAM)
    bytes_per_hz: float
    fixed_emc_hz: float
    thermal: ThermalParams
    leak_ref_c: float = 40.0
    leak_doubling_c: float = 45.0
    calibrated: bool = False
    sources: tuple[str, ...] = ()
    domain_cpus: Mapping[str, tuple[int, ...]] = field(default_factory=dict)  # cpufreq domain -> its CPUs

    def emc_bytes_per_s(self, emc_hz: float) -> float:
        """Sustainable DRAM bandwidth at an EMC clock (70 % of the bus peak)."""
        return 0.7 * self.bytes_per_hz * (emc_hz or self.fixed_emc_hz)


def load_tx2_fit() -> Tx2Fit:
    """The shipped TX2 power fit (refit with ``python benchmarks/sim_calibration.py --write``)."""
    text = resources.files("governor.sim").joinpath(TX2_FIT_RESOURCE).read_text(encoding="utf-8")
    return Tx2Fit.from_json(json.loads(text))


def _curve(domain: Domain) -> VoltageCurve:
    table = tuple(float(f) for f in domain.table_hz)
    if domain.volts_mv:
        return VoltageCurve(table, tuple(v / 1000 for v in domain.volts_mv))
    lo, hi, knee = _GENERIC_VOLTS[domain.kind]
    top = table[-1]
    return VoltageCurve(table, tuple(lo + (hi - lo) * max(0.0, (f - knee * top) / ((1 - knee) * top)) for f in table))


def _unit_perf(unit: ComputeUnit, spec: BoardSpec) -> UnitPerf:
    if unit.kind == "cpu":
        _, (mpc, eff, par) = core_perf(unit.core)
        cores = len(unit.cpus) or spec.cpu_count or 4
        return UnitPerf(mpc, eff, cores=cores, parallel_fraction=par, overlap_p=2.0, bytes_per_cycle=6.0,
                        layer_overhead_ms=0.01)
    cuda = re.search(r"(\d+)\s*CUDA", unit.core)
    if "mali" in unit.core.lower():
        return UnitPerf(48.0, 0.25, overlap_p=3.0, bytes_per_cycle=32.0, layer_overhead_ms=0.25)
    lanes = float(cuda.group(1)) if cuda else 128.0
    if unit.kind == "dla":
        return UnitPerf(1024.0, 0.3, overlap_p=4.0, bytes_per_cycle=64.0, layer_overhead_ms=0.05)
    return UnitPerf(lanes, 0.4, overlap_p=4.0, bytes_per_cycle=64.0, layer_overhead_ms=0.03)


def _term(domain: Domain, spec: BoardSpec, fig: BoardFigures, cpus: tuple[int, ...]) -> PowerTerm:
    curve = _curve(domain)
    top_hz = domain.table_hz[-1]
    v2f = curve(top_hz) ** 2 * top_hz / 1e9
    if domain.kind == "emc":
        return PowerTerm(domain.name, curve, 0.0, fig.emc_idle_mw / v2f, (fig.emc_full_mw - fig.emc_idle_mw) / v2f)
    if domain.kind == "cpu":
        unit = next((u for u in spec.units if u.domain == domain.name or set(u.cpus) & set(cpus)), None)
        key, _ = core_perf(unit.core if unit else "")
        per_core = fig.core_full_mw.get(key, next(iter(fig.core_full_mw.values())))
        cores = len(cpus) or 4
        return PowerTerm(domain.name, curve, 0.08 * per_core * cores / curve(top_hz), 0.03 * per_core / v2f,
                         per_core / v2f, stall_saving=0.5)
    full = fig.gpu_full_mw * (0.25 if domain.kind == "dla" else 1.0)
    return PowerTerm(domain.name, curve, 0.08 * full / curve(top_hz), 0.03 * full / v2f, full / v2f, stall_saving=0.5)


def _rail_domains(words: tuple[str, ...], spec: BoardSpec) -> list[str]:
    """Domains a rail's ``supplies`` words name: unit names, domain names, domain kinds, memory words."""
    by_unit = {u.name: u.domain for u in spec.units if u.domain}
    found: list[str] = []
    for word in words:
        names = [by_unit[word]] if word in by_unit else [d.name for d in spec.domains if word in (d.name, d.kind)]
        if word in _MEMORY_WORDS:
            names = [d.name for d in spec.domains if d.kind == "emc"] or [DRAM]
        found += [n for n in names if n not in found]
    return found


def _derived_rails(spec: BoardSpec, fig: BoardFigures, domain_cpus: Mapping[str, tuple[int, ...]]
                   ) -> tuple[list[RailModel], list[RailModel], InputRail | None]:
    terms = {d.name: _term(d, spec, fig, domain_cpus.get(d.name, ())) for d in spec.domains if d.table}
    if not any(d.kind == "emc" for d in spec.domains):
        ghz = fig.fixed_emc_hz / 1e9  # no EMC domain: DRAM at a fixed clock, 1 V nominal
        curve = VoltageCurve((fig.fixed_emc_hz,), (1.0,))
        terms[DRAM] = PowerTerm(DRAM, curve, 0.0, fig.emc_idle_mw / ghz, (fig.emc_full_mw - fig.emc_idle_mw) / ghz)
    rails: list[RailModel] = []
    input_name = ""
    for rail in spec.rails:
        if rail.name in INPUT_RAILS or "board" in rail.supplies:
            input_name = input_name or rail.name
            continue
        mine = [terms.pop(n) for n in _rail_domains(rail.supplies, spec) if n in terms]
        static = sum(_STATIC_WORDS.get(w, 0.0) * fig.soc_static_mw for w in rail.supplies) or 5.0
        rails.append(RailModel(rail.name, static, tuple(mine)))
    soc_seen = any("soc" in r.supplies for r in spec.rails)
    hidden = [RailModel("unmonitored", 0.0 if soc_seen else fig.soc_static_mw, tuple(terms.values()))]
    if not input_name:  # sum-of-rails boards: what the public idle figure has beyond the rails is unmonitored
        idle = sum(_idle_mw(r, spec) for r in (*rails, *hidden))
        extra = max(0.0, fig.idle_input_mw - idle)
        hidden = [RailModel("unmonitored", hidden[0].static_mw + extra, hidden[0].terms)]
        return rails, hidden, None
    idle = sum(_idle_mw(r, spec) for r in (*rails, *hidden))
    base = max(0.0, fig.idle_input_mw - fig.input_gain * idle)
    return rails, hidden, InputRail(input_name, base, fig.input_gain, tuple(r.name for r in (*rails, *hidden)))


def _idle_mw(rail: RailModel, spec: BoardSpec) -> float:
    lowest = {d.name: float(d.table_hz[0]) for d in spec.domains if d.table}
    lowest[DRAM] = next((t.curve.hz[0] for t in rail.terms if t.domain == DRAM), 0.0)
    powered = dict.fromkeys(lowest, 1.0)
    return rail_mw(rail, lowest, powered, {}, {}, 1.0)


def _tx2_rails(spec: BoardSpec) -> tuple[list[RailModel], list[RailModel], InputRail]:
    fit = load_tx2_fit()
    fitted = list(rail_models(fit, {d.name: [float(f) for f in d.table_hz] for d in spec.domains}))
    sums = tuple(r.name for r in fitted)
    others = [RailModel(r.name, 5.0) for r in spec.rails if r.name not in sums and r.name != "VDD_IN"]
    return fitted + others, [], InputRail("VDD_IN", fit.input_base_mw, fit.input_gain, sums)


def board_physics(spec: BoardSpec, domain_cpus: Mapping[str, tuple[int, ...]] | None = None) -> BoardPhysics:
    """Everything the engine needs to simulate ``spec`` (see the module doc).

    ``domain_cpus`` maps each cpufreq domain to its CPUs; by default each CPU unit's CPUs belong to
    its domain (a host whose policies were discovered passes their ``related_cpus``).
    """
    fig = figures_for(spec.name, spec.board.family)
    if domain_cpus is None:
        domain_cpus = {u.domain: tuple(u.cpus) for u in spec.units if u.kind == "cpu" and u.domain and u.cpus}
    fitted_domains = {"cpu-a57", "cpu-denver", "gpu", "emc"}
    calibrated = spec.name == "jetson-tx2" and {d.name for d in spec.domains} >= fitted_domains
    rails, hidden, input_rail = _tx2_rails(spec) if calibrated else _derived_rails(spec, fig, domain_cpus)
    emc = next((d.name for d in spec.domains if d.kind == "emc" and d.table), "")
    fan = RcNode(fig.r_fan, fig.tau_package_s) if fig.fan_on_c is not None else None
    thermal = ThermalParams(fig.ambient_c, RcNode(fig.r_package, fig.tau_package_s),
                            RcNode(fig.r_local, fig.tau_local_s), fan=fan, fan_on_c=fig.fan_on_c or math.inf)
    return BoardPhysics(
        name=spec.name, units={u.name: _unit_perf(u, spec) for u in spec.units}, rails=tuple(rails),
        hidden=tuple(hidden), input_rail=input_rail, emc_domain=emc, bytes_per_hz=fig.bytes_per_hz,
        fixed_emc_hz=fig.fixed_emc_hz, thermal=thermal, leak_ref_c=42.0 if calibrated else 40.0,
        calibrated=calibrated, sources=fig.sources, domain_cpus=dict(domain_cpus),
    )
