"""Choosing the operating point for one request.

Theory of operation
-------------------
A :class:`DecisionTable` holds, for every operating point of a loaded profile (compute unit x
threads x setpoints x active groups), the *nominal* predictions: latency (ms), energy (mJ) and the
accuracy of its group count. Nominal means an idle board at the requested clocks.

At decision time the nominal numbers are corrected by a per-(unit, threads, groups) multiplier
(contention from other load, learned residuals; see :mod:`governor.core.decision.feedback`) and a safety
margin, and a point is feasible when its corrected latency meets the deadline, its corrected
energy meets the energy budget and its accuracy meets the floor. The objective then picks one
feasible point; if none is feasible the least-violating point is returned with
``infeasible=True`` (the caller rejects instead when the client asked for strict mode).

Speed: a multiplier scales latency and energy of a whole group alike, so within a group a point
that is dominated in (latency, energy) stays dominated. Contention is per row (it depends on the
clock a row sets, see :func:`governor.core.decision.feedback.row_contention`), so it is folded into the
table before the fronts are taken, once per contention state (the caller names each state by a
key), and only the per-group residuals scale the fronts at decision time. Only the per-group Pareto fronts can ever be
chosen, whatever the budget or objective, and they are computed once per table (and once per
clock-cap state, since a cap removes points). Thousands of points shrink to a few hundred.

Idle floor: when the daemon hands the clocks back while idle, the board burns its idle power
``floor_mw`` whether a run takes long or not, so what a choice really costs is its energy *above*
that floor, ``E - floor x L``: a slower, lower-clocked run then often costs less than racing to idle
(the minimum-energy objective uses this; budgets and replies keep the whole-board energy ``E``).
With ``floor > 0`` a point dominated in (L, E) can still win, so the fronts are taken on
(L, E - floor x L) instead: if q beats p on both, q also meets every deadline and energy budget p
meets, so nothing optimal is lost. The floor is bucketed (5 % steps) to keep that cache small.

Hysteresis: when the previous choice is still feasible and within ``hysteresis`` (relative) of the
best objective value, it is kept, so the board does not thrash between near-equal points (under
``max_accuracy`` only among points of equal accuracy: accuracies are not noisy). A
point whose setpoints differ from the ones in force pays ``switch_ms`` (DVFS transition time), and
every point pays ``dispatch_ms``: what it costs to get from the decision to the end of the run
besides the forward pass itself (deciding, setting the mapping, moving tensors), which the
deadline sees and the profile does not.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import numpy.typing as npt

from governor.core.types import OperatingPoint

__all__ = ["Decision", "DecisionTable", "Demand", "Objective", "Optimiser"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Contention = tuple[Hashable, FloatArray]  # (a key naming the contention state, per-row multiplier)


class Objective(str, Enum):
    MIN_ENERGY = "min_energy"
    MAX_ACCURACY = "max_accuracy"
    MIN_LATENCY = "min_latency"


@dataclass(frozen=True)
class Demand:
    """What a request asks of the decision: its limits (any may be None, no limit) and the objective among
    the points within them. The wire's ``protocol.Budget`` is translated into it by the daemon
    (``daemon.replies.to_demand``), which fills in the configured objective where the wire names none."""

    deadline_ms: float | None = None
    energy_mj: float | None = None
    min_accuracy: float | None = None
    objective: Objective = Objective.MIN_ENERGY


@dataclass(frozen=True)
class Decision:
    point: OperatingPoint
    index: int  # row in the DecisionTable
    latency_ms: float  # corrected prediction, margin included
    energy_mj: float
    accuracy: float
    infeasible: bool
    reason: str = ""


@dataclass(frozen=True)
class DecisionTable:
    """Nominal predictions per operating point. Arrays are aligned with ``points``."""

    points: tuple[OperatingPoint, ...]
    latency_ms: FloatArray
    energy_mj: FloatArray
    accuracy: FloatArray
    simulated: bool = False
    group_of: IntArray = field(init=False)
    groups: tuple[tuple[str, int, int], ...] = field(init=False)
    setpoint_id: IntArray = field(init=False)
    setpoints: tuple[Mapping[str, int], ...] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.points)
        for name in ("latency_ms", "energy_mj", "accuracy"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} has non-finite values")
            object.__setattr__(self, name, arr)
        keys = [(p.unit, p.threads, p.groups) for p in self.points]
        groups = tuple(dict.fromkeys(keys))
        gid = {g: i for i, g in enumerate(groups)}
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "group_of", np.array([gid[k] for k in keys], dtype=np.int64))
        sps = [tuple(sorted(p.setpoints.hz.items())) for p in self.points]
        uniq = tuple(dict.fromkeys(sps))
        sid = {s: i for i, s in enumerate(uniq)}
        object.__setattr__(self, "setpoints", tuple(dict(s) for s in uniq))
        object.__setattr__(self, "setpoint_id", np.array([sid[s] for s in sps], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.points)

    def pareto_rows(self, allowed: npt.NDArray[np.bool_] | None = None, floor_mw: float = 0.0,
                    scale: FloatArray | None = None) -> IntArray:
        """Rows on the (latency, energy above ``floor_mw``) Pareto front of their group, among ``allowed``;
        ``scale`` multiplies every row's latency and energy first (per-row contention)."""
        rows = np.arange(len(self)) if allowed is None else np.flatnonzero(allowed)
        lat = self.latency_ms if scale is None else self.latency_ms * scale
        energy = self.energy_mj if scale is None else self.energy_mj * scale
        above = energy - floor_mw * lat / 1000.0 if floor_mw else energy
        keep: list[IntArray] = []
        for g in range(len(self.groups)):
            members = rows[self.group_of[rows] == g]
            if members.size:
                keep.append(_front(members, lat[members], above[members]))
        return np.sort(np.concatenate(keep)) if keep else np.empty(0, dtype=np.int64)


_MAX_FRONTS = 32
_FLOOR_STEP = math.log(1.05)


def bucket_floor(floor_mw: float) -> float:
    """``floor_mw`` rounded to a 5 % grid (0 stays 0), so nearby floors share one front. Plain ``math``:
    it runs on every decision, where a numpy scalar call costs more than the arithmetic."""
    if floor_mw <= 1.0:
        return 0.0
    return math.exp(round(math.log(floor_mw) / _FLOOR_STEP) * _FLOOR_STEP)


def _front(rows: IntArray, lat: FloatArray, energy: FloatArray) -> IntArray:
    order = np.lexsort((energy, lat))  # by latency, ties by energy
    best = np.minimum.accumulate(energy[order])
    strictly_better = np.concatenate(([True], energy[order][1:] < best[:-1]))
    return rows[order][strictly_better]


@dataclass(frozen=True)
class _Candidates:
    """The rows worth considering, with their columns gathered once (decisions only read these)."""

    rows: IntArray
    lat: FloatArray
    energy: FloatArray
    above: FloatArray  # energy above the idle floor the fronts were taken at, mJ
    acc: FloatArray
    group: IntArray
    setpoint: IntArray
    position: dict[int, int] = field(default_factory=dict)  # table row -> index here (hysteresis lookups)


@dataclass
class Optimiser:
    """Picks operating points from a :class:`DecisionTable`. Holds only caches, no board state."""

    table: DecisionTable
    hysteresis: float = 0.05
    switch_ms: float = 0.0
    dispatch_ms: float = 0.0
    _fronts: dict[tuple[object, ...], _Candidates] = field(default_factory=dict, repr=False)

    def candidates(self, caps_hz: Mapping[str, int] | None = None, floor_mw: float = 0.0,
                   contention: Contention | None = None, pin_setpoints: int | None = None) -> IntArray:
        """Rows worth considering when clocks are capped at ``caps_hz`` (e.g. thermal capping) and, with
        ``pin_setpoints`` (a ``table.setpoint_id``), only the rows of those setpoints."""
        return self._gathered(caps_hz, floor_mw, contention, pin_setpoints).rows

    def _gathered(self, caps_hz: Mapping[str, int] | None, floor_mw: float = 0.0,
                  contention: Contention | None = None, pin_setpoints: int | None = None) -> _Candidates:
        key = tuple(sorted(caps_hz.items())) if caps_hz else ()
        floor = bucket_floor(floor_mw)
        state = (key, floor, None if contention is None else contention[0], pin_setpoints)
        if state not in self._fronts:
            if len(self._fronts) >= _MAX_FRONTS:  # caps and floors drift; keep the newest few
                del self._fronts[next(iter(self._fronts))]
            allowed = None
            if key:
                ok_sp = np.array(
                    [all(sp.get(d, 0) <= cap for d, cap in key) for sp in self.table.setpoints], dtype=bool
                )
                allowed = ok_sp[self.table.setpoint_id]
            if pin_setpoints is not None:
                pinned = self.table.setpoint_id == pin_setpoints
                allowed = pinned if allowed is None else allowed & pinned
            scale = None if contention is None else contention[1]
            rows = self.table.pareto_rows(allowed, floor, scale)
            t = self.table
            lat, energy = t.latency_ms[rows], t.energy_mj[rows]
            if scale is not None:
                lat, energy = lat * scale[rows], energy * scale[rows]
            self._fronts[state] = _Candidates(
                rows, lat, energy, energy - floor * lat / 1000.0, t.accuracy[rows], t.group_of[rows],
                t.setpoint_id[rows], {int(r): i for i, r in enumerate(rows)})
        return self._fronts[state]

    def decide(
        self,
        budget: Demand,
        *,
        multiplier: Sequence[float] | FloatArray | None = None,
        margin: float | Sequence[float] | FloatArray = 0.0,
        caps_hz: Mapping[str, int] | None = None,
        current_setpoints: int | None = None,
        previous: int | None = None,
        floor_mw: float = 0.0,
        contention: Contention | None = None,
        pin_setpoints: int | None = None,
        dispatch_ms: float | None = None,
    ) -> Decision:
        """Choose a row. ``multiplier`` is per group (``table.groups`` order); ``margin`` is relative
        (0.1 = predictions inflated by 10 %), one for all or one per group; ``current_setpoints`` is a
        ``table.setpoint_id`` value;
        ``floor_mw`` is the board's idle power while we are not running (see the module doc);
        ``contention`` is (key, per-row latency multiplier over the whole table), the key naming that state;
        ``pin_setpoints``: choose only among the rows of these setpoints (a ``table.setpoint_id``: the clocks
        a stream holds); ``dispatch_ms``: the time around this run instead of ``self.dispatch_ms`` (ms)."""
        c = self._gathered(caps_hz, floor_mw, contention, pin_setpoints)
        rows = c.rows
        if rows.size == 0:
            raise ValueError("no operating point is allowed under the current clock caps")
        # Per group, so each group's Pareto front keeps its order under the scale.
        grow = 1.0 + margin if isinstance(margin, float | int) else 1.0 + np.asarray(margin, np.float64)[c.group]
        if multiplier is None:
            scale: FloatArray | float = grow
        else:
            scale = np.asarray(multiplier, dtype=np.float64)[c.group] * grow
        lat = c.lat * scale + (self.dispatch_ms if dispatch_ms is None else dispatch_ms)
        if self.switch_ms and current_setpoints is not None:
            lat = lat + (c.setpoint != current_setpoints) * self.switch_ms
        energy = c.energy * scale
        acc = c.acc
        feasible = _within(rows.size, (lat, budget.deadline_ms), (energy, budget.energy_mj),
                           (-acc, None if budget.min_accuracy is None else -budget.min_accuracy))
        if feasible.any():
            above = c.above * scale
            pick = _best(budget.objective, lat, above, acc, feasible, self.hysteresis,
                         None if previous is None else c.position.get(previous))
            return self._decision(rows[pick], lat[pick], energy[pick], acc[pick], False)
        pick = _least_violating(budget, lat, energy, acc)
        return self._decision(rows[pick], lat[pick], energy[pick], acc[pick], True, _why(budget, lat, energy, acc))

    def _decision(
        self, row: int, lat: float, energy: float, acc: float, infeasible: bool, reason: str = ""
    ) -> Decision:
        point = self.table.points[int(row)]
        return Decision(point, int(row), float(lat), float(energy), float(acc), infeasible, reason)


def _within(size: int, *limits: tuple[FloatArray, float | None]) -> npt.NDArray[np.bool_]:
    """Rows whose every value is <= its limit (None: no limit); one comparison array per limit, no
    all-true array first: this runs for every decision."""
    feasible: npt.NDArray[np.bool_] | None = None
    for values, limit in limits:
        if limit is not None:
            ok = values <= limit
            feasible = ok if feasible is None else feasible & ok
    return np.ones(size, dtype=bool) if feasible is None else feasible


def _objective_value(objective: Objective, lat: FloatArray, energy: FloatArray, acc: FloatArray) -> FloatArray:
    """Smaller is better. Ties on accuracy are broken by energy (a tiny weight keeps the order)."""
    if objective is Objective.MIN_ENERGY:
        return energy
    if objective is Objective.MIN_LATENCY:
        return lat
    return -acc + 1e-9 * energy / (1.0 + float(np.max(energy)))


def _best(
    objective: Objective,
    lat: FloatArray,
    energy: FloatArray,
    acc: FloatArray,
    feasible: npt.NDArray[np.bool_],
    hysteresis: float,
    previous: int | None,
) -> int:
    """The best feasible index; ``previous`` (an index into these arrays, or None) is kept while it is
    feasible and within ``hysteresis`` of the best."""
    value = np.where(feasible, _objective_value(objective, lat, energy, acc), np.inf)
    best = int(np.argmin(value))
    if previous is None or not feasible[previous]:
        return best
    if objective is Objective.MAX_ACCURACY and acc[previous] < acc[best]:
        return best  # accuracy is measured once, not noisy: a better k is never given up to save a switch
    prev_value, best_value = value[previous], value[best]
    if prev_value - best_value <= hysteresis * abs(best_value):
        return previous
    return best


def _least_violating(budget: Demand, lat: FloatArray, energy: FloatArray, acc: FloatArray) -> int:
    """The point whose worst relative violation is smallest; accuracy floor kept if it can be."""
    worst = np.zeros(lat.size)
    if budget.deadline_ms is not None:
        worst = np.maximum(worst, lat / budget.deadline_ms)
    if budget.energy_mj is not None:
        worst = np.maximum(worst, energy / budget.energy_mj)
    if budget.min_accuracy is not None:
        meets = acc >= budget.min_accuracy
        if meets.any():
            worst = np.where(meets, worst, np.inf)
    return int(np.argmin(worst))


NO_TIME_LEFT_MS = 1e-6  # the deadline a request is given once its time ran out while it waited, ms


def _why(budget: Demand, lat: FloatArray, energy: FloatArray, acc: FloatArray) -> str:
    parts = []
    if budget.deadline_ms is not None and float(lat.min()) > budget.deadline_ms:
        left = "no time left" if budget.deadline_ms <= NO_TIME_LEFT_MS else f"deadline {budget.deadline_ms:.3g} ms"
        parts.append(f"fastest point takes {float(lat.min()):.3g} ms > {left}")
    if budget.energy_mj is not None and float(energy.min()) > budget.energy_mj:
        parts.append(f"cheapest point needs {float(energy.min()):.3g} mJ > budget {budget.energy_mj:g} mJ")
    if budget.min_accuracy is not None and float(acc.max()) < budget.min_accuracy:
        parts.append(f"best accuracy {float(acc.max()):.3g} < floor {budget.min_accuracy:g}")
    return "; ".join(parts) or "no single point meets all limits at once"
