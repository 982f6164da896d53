"""The policies under evaluation: ours and the baselines users have today, all on the daemon's own path.

Theory of operation
-------------------
Every policy runs inside the real daemon loop (:class:`governor.daemon.service.Daemon` driving the
governor machine, as ``governor serve`` does): requests are queued EDF, decided by the planner and
optimiser, applied through the drivers, run and fed back.
A policy differs only in

* ``table``: the operating points the daemon may choose from (a subset of the profile, or one
  point);
* ``install``: replacing the governor machine's planner (the oracle only);
* ``start`` / ``act``: clock writes through the drivers before the trace and every ``period_s``
  of virtual time (``jetson_clocks`` pins once; the kernel governors' rules run at their own rate).

The *baseline mapping* is the fastest full-network point at top clocks: the unit and thread count
a user runs the network on without us. ``performance``, ``schedutil``, ``ondemand``,
``groups-only`` and ``dvfs-only`` keep it; ours, the oracle and the best static point may map
anywhere.

Kernel governors are emulated per domain (CPU and GPU; the memory clock is left to its firmware, as
on a real board) from the busy fraction since their previous update, at kernel-like rates:
schedutil every 10 ms (its rate limit) on a PELT-like average (32 ms half-life), asking for
1.25 x util x current clock (``next_freq = 1.25 x max x util/max`` with frequency-invariant util);
ondemand every 20 ms (its sampling period) on the plain window load, jumping to the top above
``up_threshold`` (95 %, the kernel's value with NO_HZ) and otherwise scaling linearly between the
bottom and the top. Both take the lowest OPP at or above the target. A run is atomic in the
simulator, so a governor acts between runs, never in the middle of one.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from governor.core.board import BoardSpec
from governor.core.decision.machine import GovernorMachine
from governor.core.decision.optimiser import DecisionTable
from governor.core.types import Setpoints
from governor.daemon.tables import MeasuredTable
from governor.evaluate.oracle import OraclePlanner, TrueContention, best_static
from governor.evaluate.traces import ResolvedTrace

__all__ = ["POLICIES", "Policy", "PolicyContext", "baseline_row", "make_policies", "subset"]


@dataclass(frozen=True)
class PolicyContext:
    """What policies may read: the board, the profile, the trace, its true contention and the OPP tables."""

    spec: BoardSpec
    profile: MeasuredTable
    trace: ResolvedTrace
    contention: TrueContention
    domain_hz: Mapping[str, tuple[int, ...]]  # available frequencies per domain, Hz, ascending

    @property
    def top_hz(self) -> dict[str, int]:
        return {d: max(hz) for d, hz in self.domain_hz.items()}

    @property
    def baseline_row(self) -> int:
        return baseline_row(self.profile.table)

    def mapping_rows(self, k: int | None = None) -> np.ndarray:
        """Rows on the baseline mapping (optionally with ``k`` groups)."""
        base = self.profile.table.points[self.baseline_row]
        return np.flatnonzero([p.unit == base.unit and p.threads == base.threads and (k is None or p.groups == k)
                               for p in self.profile.table.points])


def baseline_row(table: DecisionTable) -> int:
    """The fastest full-network point (the baselines' mapping at top clocks); its latency is 1 ref."""
    top_k = max(p.groups for p in table.points)
    full = np.flatnonzero([p.groups == top_k for p in table.points])
    return int(full[np.argmin(table.latency_ms[full])])


def subset(table: MeasuredTable, rows: Sequence[int] | np.ndarray, setpoints: Mapping[str, int] | None = None,
           ) -> MeasuredTable:
    """The rows of ``table``; with ``setpoints``, every row's clocks replaced by them (same predictions)."""
    t, rows = table.table, np.asarray(rows, dtype=np.int64)
    clocks = None if setpoints is None else Setpoints(setpoints)
    points = tuple(t.points[i] if clocks is None else dataclasses.replace(t.points[i], setpoints=clocks) for i in rows)
    sub = DecisionTable(points, t.latency_ms[rows], t.energy_mj[rows], t.accuracy[rows], simulated=t.simulated)
    return MeasuredTable(sub, table.energy_measured, table.reps, table.idle_power_mw)


class Policy:
    """One policy (see the module doc). Subclasses override what differs."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    period_s: ClassVar[float | None] = None  # how often ``act`` runs (virtual s); None = never
    idle_clocks: ClassVar[str] = "release"  # the daemon's [policy] idle_clocks: ours hands clocks back when idle

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        return ctx.profile

    def install(self, ctx: PolicyContext, machine: GovernorMachine, sim: Any) -> None:
        """Adjust the governor machine before the trace (``sim`` is the simulated board, for what only an
        oracle knows)."""
        return None

    def start(self, ctx: PolicyContext, board: Any) -> None:
        return None

    def act(self, ctx: PolicyContext, board: Any, util: Mapping[str, float]) -> None:
        """Every ``period_s``; ``util`` is each domain's busy fraction since the previous call (0..1)."""
        return None


class Ours(Policy):
    name, summary = "ours", "the daemon: groups + DVFS + mapping from the profile, contention and residuals"


class Oracle(Policy):
    name, summary = "oracle", "the daemon's optimiser with the true contention of the coming window"

    def install(self, ctx: PolicyContext, machine: GovernorMachine, sim: Any) -> None:
        tops = ctx.top_hz

        def true_caps() -> dict[str, int]:
            return {d: int(c) for d, c in sim.truth().caps_hz.items() if d in tops and c < tops[d]}

        machine.planner = OraclePlanner.replacing(machine.planner, ctx.contention, true_caps, sim.clock)


class Performance(Policy):
    name, summary = "performance", "jetson_clocks: every domain pinned at its top clock, full network"
    idle_clocks = "keep"  # jetson_clocks pins for good

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        return subset(ctx.profile, [ctx.baseline_row], ctx.top_hz)

    def start(self, ctx: PolicyContext, board: Any) -> None:
        board.apply(Setpoints(ctx.top_hz))


class GroupsOnly(Performance):
    name, summary = "groups-only", "top clocks (jetson_clocks); the daemon picks k only (dynamic DNN, no DVFS)"

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        t = ctx.profile.table
        fastest = [int(rows[np.argmin(t.latency_ms[rows])]) for k in range(1, max(p.groups for p in t.points) + 1)
                   if (rows := ctx.mapping_rows(k)).size]
        return subset(ctx.profile, fastest, ctx.top_hz)


class DvfsOnly(Policy):
    name, summary = "dvfs-only", "full network on the baseline mapping; the daemon picks clocks only"

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        return subset(ctx.profile, ctx.mapping_rows(ctx.profile.table.points[ctx.baseline_row].groups))


class BestStatic(Policy):
    name, summary = "best-static", "the one point meeting the most budgets at least energy, chosen offline"
    idle_clocks = "keep"  # a static configuration: its clocks stay set

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        return subset(ctx.profile, [best_static(ctx.profile.table, ctx.contention, ctx.trace.arrivals)])


class _KernelGovernor(Policy):
    """Full network on the baseline mapping; CPU/GPU clocks follow a kernel governor's rule."""

    idle_clocks = "keep"  # the daemon never writes a clock here

    def __init__(self) -> None:
        self.util: dict[str, float] = {}

    def table(self, ctx: PolicyContext) -> MeasuredTable:
        return subset(ctx.profile, [ctx.baseline_row], {})  # the daemon never writes a clock

    def start(self, ctx: PolicyContext, board: Any) -> None:
        self.util = {}
        for name, hz in ctx.domain_hz.items():
            board.domains[name].set_range(min(hz), max(hz))  # the memory clock goes back to its firmware

    def act(self, ctx: PolicyContext, board: Any, util: Mapping[str, float]) -> None:
        wanted = {}
        for name, table in ctx.domain_hz.items():
            if ctx.spec.domain(name).kind not in ("cpu", "gpu"):
                continue
            cur_hz = board.domains[name].read().cur_hz
            self.util[name] = self.smooth(self.util.get(name, 0.0), util.get(name, 0.0))
            hz = _snap_up(table, self.target_hz(table, cur_hz, self.util[name]))
            if hz != cur_hz:
                wanted[name] = hz
        if wanted:
            board.apply(Setpoints(wanted))

    def smooth(self, previous: float, window: float) -> float:
        return window

    def target_hz(self, table: tuple[int, ...], cur_hz: int, busy: float) -> float:  # pragma: no cover
        raise NotImplementedError


def _snap_up(table: tuple[int, ...], target: float) -> int:
    """The lowest OPP at or above ``target`` (the top if none is)."""
    return table[min(bisect.bisect_left(table, target - 1e-6), len(table) - 1)]


class Schedutil(_KernelGovernor):
    name, summary = "schedutil", "Linux schedutil's rule per CPU/GPU domain (1.25 x util), full network"
    period_s = 0.010
    half_life_s = 0.032

    def smooth(self, previous: float, window: float) -> float:
        keep = 0.5 ** (float(self.period_s or 0.0) / self.half_life_s)
        return float(keep * previous + (1.0 - keep) * window)

    def target_hz(self, table: tuple[int, ...], cur_hz: int, busy: float) -> float:
        return 1.25 * busy * cur_hz


class Ondemand(_KernelGovernor):
    name, summary = "ondemand", "Linux ondemand's rule per CPU/GPU domain (top above 95 % busy), full network"
    period_s = 0.020
    up_threshold = 0.95

    def target_hz(self, table: tuple[int, ...], cur_hz: int, busy: float) -> float:
        return table[-1] if busy > self.up_threshold else table[0] + busy * (table[-1] - table[0])


POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    Ours, Oracle, Performance, Schedutil, Ondemand, GroupsOnly, DvfsOnly, BestStatic)}


def make_policies(names: Sequence[str] = ()) -> list[Policy]:
    """Instances of the named policies (all, in the report's order, when ``names`` is empty)."""
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ValueError(f"unknown policy {', '.join(map(repr, unknown))}; choose from {', '.join(POLICIES)}")
    return [POLICIES[n]() for n in (names or POLICIES)]
