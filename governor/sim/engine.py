"""The simulated board's dynamics: clocks, loads, power, heat and job progress over time.

Theory of operation
-------------------
:meth:`Engine.advance` moves time in steps during which nothing changes: a step ends at the
requested time, at a cooling poll, at a scenario change, when a job finishes, or after
``max_step_s``. Each step: (1) clocks from the controls the kernel files hold (governors see the
previous step's load, as kernel sampling windows do) capped by thermal throttling; (2) loads per
unit from co-runners and jobs, which time-share it (a CPU cluster serves co-runners first; an
accelerator's engine is time-sliced round-robin between contexts, as GPU runlists are, so a co-runner
that wants more than its fair slice gets only that: :func:`fair_shares`); (3) rail power (:mod:`governor.core.physics`)
with leakage at the package temperature; (4) RC heat; (5) job progress at ``1/latency`` per
second, latency recomputed at the current clocks, so a clock or co-runner change mid-run is
honoured; (6) energy and busy-time counters for the sensors. Everything is deterministic; noise is
added by the sensors that publish it (:mod:`governor.sim.kernel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from governor.core.board import BoardSpec, ComputeUnit
from governor.core.physics import leakage_gain, run_cost, term_mw
from governor.sim.boards import DRAM, BoardPhysics
from governor.sim.dvfs import DomainControl, Throttle, governed_hz
from governor.sim.scenario import Scenario
from governor.sim.thermal import Heat
from governor.sim.values import Job, Truth, UnitLoad

__all__ = ["Engine", "fair_shares"]

_UNCLOCKED_HZ = 2.0e9  # a unit without a DVFS domain (generic host) runs here
_Map = dict[str, float]


def fair_shares(demands: list[float]) -> list[float]:
    """Max-min fair split of one engine (capacity 1) among contexts wanting ``demands`` (fractions):
    the smallest demands are met in full, the rest split what is left equally."""
    alloc = [0.0] * len(demands)
    left = 1.0
    order = sorted(range(len(demands)), key=lambda i: demands[i])
    for pos, i in enumerate(order):
        alloc[i] = min(max(demands[i], 0.0), left / (len(order) - pos))
        left -= alloc[i]
    return alloc


class Engine:
    """State and time stepping of one simulated board (see the module doc)."""

    def __init__(self, spec: BoardSpec, physics: BoardPhysics, *, start_s: float = 0.0,
                 scenario: Scenario | None = None, max_step_s: float = 0.1) -> None:
        self.spec, self.phys, self.t, self.max_step_s = spec, physics, start_s, max_step_s
        self.scenario = scenario or Scenario.idle()
        self.tables = {d.name: tuple(float(f) for f in d.table_hz) for d in spec.domains if d.table}
        self.kinds = {d.name: d.kind for d in spec.domains}
        self.unit_spec = {u.name: u for u in spec.units}
        self.pieces = {u.name: self._pieces(u) for u in spec.units}
        self.cur_hz = {d: t[0] for d, t in self.tables.items()}
        self.util = dict.fromkeys(self.tables, 0.0)
        self.throttle = Throttle({d: t for d, t in self.tables.items() if self.kinds[d] in ("cpu", "gpu")},
                                 physics.thermal.hysteresis_c)
        self.heat = Heat(spec, physics)
        self.mem = physics.emc_domain or DRAM
        self.energy_mj: dict[str, float] = {}
        self.busy_s: dict[int, float] = {}
        self.up_s: dict[int, float] = {}
        self.jobs: list[Job] = []
        self.next_poll = start_s + physics.thermal.poll_s
        self.controls: Mapping[str, DomainControl] = {}
        self.online: frozenset[int] = frozenset(range(spec.cpu_count))
        self._last: Truth | None = None
        self.settle()

    # ---- clocks and loads -------------------------------------------------------------------
    def _pieces(self, unit: ComputeUnit) -> list[tuple[str, tuple[int, ...]]]:
        """(domain, cpus) parts of a unit: one per cpufreq policy its CPUs span; (domain, ()) otherwise."""
        if unit.kind == "cpu" and unit.cpus:
            mine = set(unit.cpus)
            return [(d, tuple(c for c in cpus if c in mine)) for d, cpus in self.phys.domain_cpus.items()
                    if mine & set(cpus)]
        return [(unit.domain, ())] if unit.domain else []

    def _online_in(self, cpus: tuple[int, ...]) -> int:
        return sum(1 for c in cpus if c in self.online)

    def _n_on(self, unit_name: str) -> int:
        unit = self.unit_spec[unit_name]
        if unit.kind != "cpu":
            return 1
        if not unit.cpus:
            return self.phys.units[unit_name].cores
        return self._online_in(unit.cpus)

    def _clocks(self) -> dict[str, float]:
        freqs: dict[str, float] = {}
        for d, table in self.tables.items():
            control = self.controls.get(d, DomainControl(governor="schedutil"))
            freqs[d] = min(governed_hz(table, control, self.util.get(d, 0.0), self.cur_hz[d]), self.throttle.cap_hz(d))
            if d in self.phys.domain_cpus and self._online_in(self.phys.domain_cpus[d]) == 0:
                freqs[d] = 0.0  # every CPU of the policy is offline
        if self.mem not in freqs:
            freqs[self.mem] = self.phys.fixed_emc_hz
        self.cur_hz.update({d: f for d, f in freqs.items() if f > 0 and d in self.tables})
        return freqs

    def _unit_hz(self, unit_name: str, freqs: Mapping[str, float]) -> float:
        """A unit's clock: its domain's, or for CPUs spread over policies the mean over online CPUs."""
        unit = self.unit_spec[unit_name]
        pieces = self.pieces[unit_name]
        if unit.kind == "cpu" and unit.cpus:
            weights = [(freqs.get(d, 0.0), self._online_in(cpus)) for d, cpus in pieces]
            online = sum(n for _, n in weights)
            return sum(f * n for f, n in weights) / online if online else 0.0
        return freqs.get(unit.domain, 0.0) if unit.domain else _UNCLOCKED_HZ

    def _unit_top_hz(self, unit_name: str, f: float) -> float:
        """The highest clock a unit's domains offer (``f`` for a unit without a table)."""
        tops = [self.tables[d][-1] for d, _ in self.pieces[unit_name] if d in self.tables]
        return max(tops, default=f)

    def _emc_hz(self, freqs: Mapping[str, float]) -> float:
        return freqs.get(self.phys.emc_domain, 0.0) or self.phys.fixed_emc_hz

    def _loads(self, freqs: Mapping[str, float]) -> dict[str, UnitLoad]:
        emc_hz = self._emc_hz(freqs)
        runners = self.scenario.active(self.t)
        loads: dict[str, UnitLoad] = {}
        for unit in self.spec.units:
            load = loads[unit.name] = UnitLoad()
            f, width = self._unit_hz(unit.name, freqs), float(self._n_on(unit.name))
            if f <= 0 or width <= 0:
                continue
            mine = [r for r in runners if r.unit == unit.name]
            top = self._unit_top_hz(unit.name, f)
            shares = [min(1.0, r.share * top / f) if r.fixed_work else r.share for r in mine]
            jobs = [j for j in self.jobs if j.unit == unit.name and not j.done]
            if unit.kind != "cpu" and jobs and mine:
                # Each job wants the whole engine; round-robin gives no context more than its fair slice.
                shares = fair_shares([*shares, *([1.0] * len(jobs))])[: len(mine)]
            taken = min(sum(shares), 0.95)
            for r, share in zip(mine, shares, strict=True):
                busy = share * width
                load.busy += busy
                load.stall_busy += busy * r.stall_ratio * f / (r.stall_ratio * f + emc_hz)
                load.traffic += r.traffic_bytes_per_s
            self._job_loads(unit.name, jobs, load, f, width, taken, emc_hz)
        for r in runners:
            if r.unit not in loads:
                loads.setdefault("_dram", UnitLoad()).traffic += r.traffic_bytes_per_s
        return loads

    def _job_loads(self, unit: str, jobs: list[Job], load: UnitLoad, f: float, width: float, taken: float,
                   emc_hz: float) -> None:
        perf = self.phys.units[unit]
        for job in jobs:
            threads = int(min(job.threads, width)) if self.unit_spec[unit].kind == "cpu" else 1
            cost = run_cost(job.workload, job.k, perf, f, max(threads, 1), self.phys.emc_bytes_per_s(emc_hz))
            slice_ = (1.0 - taken) / len(jobs)
            busy = (threads if self.unit_spec[unit].kind == "cpu" else 1.0) * slice_
            load.rates[job.id] = slice_ / cost.total_s
            load.busy += busy
            load.stall_busy += busy * cost.stall
            load.traffic += cost.bytes * load.rates[job.id]

    def _board_mw(self, rails: Mapping[str, float]) -> float:
        """What the whole board draws: the input rail where there is one, else every rail."""
        return rails[self.phys.input_rail.name] if self.phys.input_rail else rails["_chip"]

    def zone_temp(self, zone_type: str) -> float:
        """A thermal zone's temperature now, °C."""
        return self.heat.zone_temp(zone_type)

    # ---- power -------------------------------------------------------------------------
    def _domain_activity(self, loads: Mapping[str, UnitLoad], freqs: Mapping[str, float]) -> tuple[_Map, _Map, _Map]:
        """Per domain: powered cores (or 1), busy cores (or fraction), stall-weighted busy / busy."""
        powered: _Map = {}
        activity: _Map = {}
        stalled: _Map = {}
        for unit in self.spec.units:
            load, width = loads[unit.name], self._n_on(unit.name)
            for d, cpus in self.pieces[unit.name]:
                share = (self._online_in(cpus) / width if width else 0.0) if cpus else 1.0
                on = self._online_in(cpus) if cpus else (width if unit.kind == "cpu" else 1.0)
                powered[d] = powered.get(d, 0.0) + (on if freqs.get(d, 0.0) > 0 else 0.0)
                activity[d] = activity.get(d, 0.0) + load.busy * share
                stalled[d] = stalled.get(d, 0.0) + load.stall_busy * share
        stall = {d: stalled[d] / activity[d] if activity[d] > 0 else 0.0 for d in activity}
        traffic = sum(x.traffic for x in loads.values())
        powered[self.mem] = 1.0
        activity[self.mem] = min(1.0, traffic / (self.phys.bytes_per_hz * self._emc_hz(freqs)))
        return powered, activity, stall

    def _power(self, loads: Mapping[str, UnitLoad], freqs: Mapping[str, float]) -> tuple[_Map, _Map]:
        powered, activity, stall = self._domain_activity(loads, freqs)
        gain = leakage_gain(self.heat.pkg_c, self.phys.leak_ref_c, self.phys.leak_doubling_c)
        rails: dict[str, float] = {}
        by_domain: dict[str, float] = {}
        for rail in (*self.phys.rails, *self.phys.hidden):
            total = rail.static_mw * gain
            for term in rail.terms:
                d = term.domain
                f, on = freqs.get(d, 0.0), powered.get(d, 0.0)
                mw = term_mw(term, f, on, activity.get(d, 0.0), stall.get(d, 0.0), gain)
                by_domain[d] = by_domain.get(d, 0.0) + mw
                total += mw
            rails[rail.name] = total
        chip = sum(rails.values())
        spec_in = self.phys.input_rail
        if spec_in:
            rails[spec_in.name] = spec_in.base_mw + spec_in.gain * sum(rails.get(n, 0.0) for n in spec_in.sums)
        rails["_chip"] = chip
        return rails, by_domain

    # ---- time -----------------------------------------------------------------------------------
    def settle(self) -> None:
        """Start from the idle steady state (as a board that has been on a while)."""
        freqs = self._clocks()
        rails, by_domain = self._power(self._loads(freqs), freqs)
        for _ in range(3):  # leakage depends on temperature; a few rounds converge
            self.heat.step(self._board_mw(rails), by_domain, 1e6)
            rails, by_domain = self._power(self._loads(freqs), freqs)
        self._remember(freqs, rails, self._loads(freqs))

    def refresh(self) -> None:
        """Recompute clocks and power for new controls without moving time."""
        freqs = self._clocks()
        loads = self._loads(freqs)
        rails, _ = self._power(loads, freqs)
        self._remember(freqs, rails, loads)

    def advance(self, until_s: float, stop: Callable[[], bool] | None = None) -> None:
        """Run from ``self.t`` to ``until_s`` (s) with the current controls, or until ``stop()`` is true."""
        while self.t < until_s - 1e-12 and not (stop and stop()):
            freqs = self._clocks()
            loads = self._loads(freqs)
            dt = min(until_s - self.t, self.max_step_s, max(self.next_poll - self.t, 1e-9),
                     max(self.scenario.next_change(self.t) - self.t, 1e-9), self._time_to_finish(loads))
            rails, by_domain = self._power(loads, freqs)
            self.heat.step(self._board_mw(rails), by_domain, dt)
            self._account(rails, loads, freqs, dt)
            self.t += dt
            if self.t >= self.next_poll - 1e-12:
                self.heat.poll(self.throttle)
                self.next_poll += self.phys.thermal.poll_s
            self._remember(freqs, rails, loads)

    def _time_to_finish(self, loads: Mapping[str, UnitLoad]) -> float:
        rates = {jid: r for load in loads.values() for jid, r in load.rates.items() if r > 0}
        left = [(1.0 - j.progress) / rates[j.id] for j in self.jobs if not j.done and j.id in rates]
        return max(min(left, default=math.inf), 1e-9)

    def _account(self, rails: Mapping[str, float], loads: Mapping[str, UnitLoad], freqs: Mapping[str, float],
                 dt: float) -> None:
        for name, mw in rails.items():
            self.energy_mj[name] = self.energy_mj.get(name, 0.0) + mw * dt
        board_mw = self._board_mw(rails)
        for job in self.jobs:
            rate = next((ld.rates[job.id] for ld in loads.values() if job.id in ld.rates), 0.0)
            if job.done or rate <= 0:
                continue
            job.progress += rate * dt
            job.energy_mj += board_mw * dt
            if job.progress >= 1.0 - 1e-9:
                job.progress, job.finish_s = 1.0, self.t + dt
        for unit in self.spec.units:
            if unit.kind == "cpu":
                self._count_cpu_time(unit.name, loads[unit.name], dt)
        powered, activity, _ = self._domain_activity(loads, freqs)
        for d in self.util:
            self.util[d] = min(1.0, activity.get(d, 0.0) / powered[d]) if powered.get(d) else 0.0
        self.jobs = [j for j in self.jobs if not j.done]

    def _count_cpu_time(self, unit: str, load: UnitLoad, dt: float) -> None:
        cpus = [c for c in self.unit_spec[unit].cpus if c in self.online]
        for cpu in cpus:
            self.busy_s[cpu] = self.busy_s.get(cpu, 0.0) + min(1.0, load.busy / len(cpus)) * dt
            self.up_s[cpu] = self.up_s.get(cpu, 0.0) + dt

    def _remember(self, freqs: Mapping[str, float], rails: Mapping[str, float], loads: Mapping[str, UnitLoad]) -> None:
        util = {u.name: min(1.0, loads[u.name].busy / max(self._n_on(u.name), 1)) for u in self.spec.units}
        total = self._board_mw(rails)
        self._last = Truth(self.t, dict(freqs), {d: self.throttle.cap_hz(d) for d in self.tables},
                           {k: v for k, v in rails.items() if not k.startswith("_")}, total,
                           self.heat.temps(), util)

    def truth(self) -> Truth:
        assert self._last is not None
        return self._last
