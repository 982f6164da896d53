"""What only an offline observer knows: the true contention of every operating point at every instant.

Theory of operation
-------------------
A simulated co-runner with share *s* of a unit (``fixed_work``) wants it busy min(1, s·f_top/f)
at clock *f*. On a CPU cluster the co-runners take that (at most 95 % together) and an inference
progresses at the rest; an accelerator is time-sliced round-robin, so with our inference running
each co-runner gets at most its fair slice (``docs/simulator.md``, Contention). So the true latency
multiplier of a point on unit *u* at clock *f* is 1 / (1 − taken), taken = min(0.95, Σ min(1,
s·f_top/f)) on a CPU and the co-runners' max-min fair allocation next to one greedy context on an
accelerator, known exactly from the trace's load phases.
:class:`TrueContention` evaluates it per table row, worst case over a time window.

Three things use it:

* :class:`OraclePlanner`, the governor machine's own planner with the nominal table replaced by the true
  one for the window [now, now + deadline] and the simulator's true thermal caps: perfect
  knowledge of present and future load and of the board's state, with the same optimiser, queue,
  residual learning and actuation as ours;
* :func:`feasible`: a request is feasible if some point meeting its accuracy floor would finish
  within the deadline on an idle queue, at the true contention;
* :func:`best_static`: the single point that meets the most budgets over the whole trace (then
  least energy), from the profile and the true contention, with a first-come-first-served queue.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from governor.core.board import BoardSpec
from governor.core.decision.optimiser import Decision, DecisionTable, Demand, Optimiser
from governor.core.decision.planner import Planner
from governor.core.types import Observation
from governor.evaluate.traces import Arrival
from governor.sim import CoRunner, Scenario
from governor.sim.engine import fair_shares

__all__ = ["OraclePlanner", "TrueContention", "best_static", "feasible"]

_MAX_TAKEN = 0.95  # the simulator never lets co-runners take more of a unit
FloatArray = npt.NDArray[np.float64]


class TrueContention:
    """Per-row latency multipliers of ``table`` under ``scenario``'s co-runners (see the module doc)."""

    def __init__(self, table: DecisionTable, spec: BoardSpec, scenario: Scenario) -> None:
        self.table, self.scenario = table, scenario
        units = {u.name: u for u in spec.units}
        tops = {d.name: float(max(d.table_hz)) for d in spec.domains if d.table}
        self._unit = [p.unit for p in table.points]
        domains = [units[p.unit].domain if p.unit in units else "" for p in table.points]
        self._ratio = np.array([tops.get(d, 1.0) / max(float(p.setpoints.hz.get(d, tops.get(d, 1.0))), 1.0)
                                for d, p in zip(domains, table.points, strict=True)])
        self._accelerator = np.array([p.unit in units and units[p.unit].kind != "cpu" for p in table.points])
        self._cache: dict[tuple[CoRunner, ...], FloatArray] = {}

    def active_sets(self, t0: float, t1: float) -> tuple[tuple[CoRunner, ...], ...]:
        """Every distinct co-runner set in force during [t0, t1] (s)."""
        sets, t = [self.scenario.active(t0)], t0
        while (t := self.scenario.next_change(t)) <= t1:
            sets.append(self.scenario.active(t))
        return tuple(dict.fromkeys(sets))

    def multiplier(self, t0: float, t1: float) -> FloatArray:
        """Worst multiplier per row over [t0, t1] (s)."""
        return self.worst(self.active_sets(t0, t1))

    def worst(self, sets: tuple[tuple[CoRunner, ...], ...]) -> FloatArray:
        """Worst multiplier per row over the given co-runner sets."""
        out: FloatArray = np.maximum.reduce([self._for(s) for s in sets])
        return out

    def _for(self, runners: tuple[CoRunner, ...]) -> FloatArray:
        if runners not in self._cache:
            wants = np.zeros((len(runners), len(self.table)))
            for i, r in enumerate(runners):
                rows = np.array([u == r.unit for u in self._unit])
                share = np.minimum(1.0, r.share * self._ratio) if r.fixed_work else np.full(len(self.table), r.share)
                wants[i] = np.where(rows, share, 0.0)
            taken = wants.sum(axis=0)
            for row in np.flatnonzero(self._accelerator & (taken > 0)):  # round-robin next to our one context
                taken[row] = sum(fair_shares([*wants[:, row], 1.0])[:-1])
            self._cache[runners] = 1.0 / (1.0 - np.minimum(taken, _MAX_TAKEN))
        return self._cache[runners]


@dataclass
class OraclePlanner(Planner):
    """The governor machine's planner deciding on the true table of the coming window (see the module doc)."""

    truth: TrueContention | None = None
    true_caps: Callable[[], Mapping[str, int]] | None = None
    now: Callable[[], float] | None = None  # the board's clock, s
    _optimisers: dict[tuple[tuple[CoRunner, ...], ...], Optimiser] = field(default_factory=dict, repr=False)

    @classmethod
    def replacing(cls, scheduler: Planner, contention: TrueContention,
                  true_caps: Callable[[], Mapping[str, int]] | None = None,
                  now: Callable[[], float] | None = None) -> OraclePlanner:
        return cls(scheduler.optimiser, scheduler.unit_kind, scheduler.unit_cores, scheduler.table_max_hz,
                   charge_idle=scheduler.charge_idle, idle_floor_mw=scheduler.idle_floor_mw,
                   unit_domain=scheduler.unit_domain,
                   truth=contention, true_caps=true_caps, now=now)

    def others_quiet(self) -> bool:
        """The same rule as ours (clocks are parked only while nobody else runs), on the true co-runners."""
        if self.truth is None or self.now is None:
            return super().others_quiet()
        t = self.now()
        return not any(self.truth.active_sets(t, t))

    def observe(self, obs: Observation, own_busy: Mapping[str, float] | None = None,
                held: Collection[str] = (), power_mw: float | None = None) -> None:
        super().observe(obs, own_busy, held, power_mw)
        if self.true_caps is not None:
            self.caps_hz = dict(self.true_caps())  # the simulator's thermal caps, not inferred from read-backs

    def decide(self, budget: Demand, *, now: float | None = None, arrival_t: float | None = None,
               remember: bool = True, behind: Sequence[float] = (), scale: Sequence[float] | None = None,
               lease: bool = False, stream: bool = False, pin: int | None = None,
               previous: int | Literal["shared"] | None = "shared") -> Decision:
        assert self.truth is not None
        t0 = self.last_t if now is None else now
        key = self.truth.active_sets(t0, t0 + (budget.deadline_ms or 0.0) / 1000.0)
        if key not in self._optimisers:
            nominal = self.truth.table
            m = self.truth.worst(key)
            true = DecisionTable(nominal.points, nominal.latency_ms * m, nominal.energy_mj * m, nominal.accuracy,
                                 simulated=nominal.simulated)
            self._optimisers[key] = Optimiser(true, hysteresis=self.optimiser.hysteresis,
                                              switch_ms=self.optimiser.switch_ms)
        self.optimiser = self._optimisers[key]
        return super().decide(budget, now=now, arrival_t=arrival_t, remember=remember, behind=behind, scale=scale,
                              stream=stream, pin=pin, previous=previous)

    def multiplier(self) -> FloatArray:
        return self.residuals.multiplier()

    def contention(self) -> None:
        return None  # the true contention is already in the table

    def feedback(self, decision: Decision, measured_latency_ms: float) -> None:
        group = int(self.optimiser.table.group_of[decision.index])
        self.residuals.update(group, float(self.optimiser.table.latency_ms[decision.index]), measured_latency_ms)


def _meets_floor(table: DecisionTable, floor: float | None) -> npt.NDArray[np.bool_]:
    return np.ones(len(table), dtype=bool) if floor is None else table.accuracy >= floor - 1e-12


def feasible(table: DecisionTable, contention: TrueContention, arrivals: tuple[Arrival, ...]) -> list[bool]:
    """Per arrival: can any point meeting its floor finish within the deadline on an idle queue?"""
    out = []
    for a in arrivals:
        lat = table.latency_ms * contention.multiplier(a.t_s, a.t_s + a.deadline_ms / 1000.0)
        ok = _meets_floor(table, a.min_accuracy)
        out.append(bool(ok.any() and float(lat[ok].min()) <= a.deadline_ms))
    return out


def best_static(table: DecisionTable, contention: TrueContention, arrivals: tuple[Arrival, ...]) -> int:
    """The row meeting the most budgets over the trace (FCFS queue, true contention), then least energy."""
    n = len(table)
    free_at, met, energy = np.zeros(n), np.zeros(n), np.zeros(n)
    for a in arrivals:
        m = contention.multiplier(a.t_s, a.t_s + a.deadline_ms / 1000.0)
        finish = np.maximum(free_at, a.t_s) + table.latency_ms * m / 1000.0
        met += ((finish - a.t_s) * 1000.0 <= a.deadline_ms + 1e-9) & _meets_floor(table, a.min_accuracy)
        energy += table.energy_mj * m
        free_at = finish
    best = met == met.max()
    return int(np.flatnonzero(best)[np.argmin(energy[best])])
