"""Streams: standing requests of an application with a steady frame rate (a camera pipeline). Pure.

A stream is opened once with a budget per frame; the governor machine chooses its point, holds that
point's setpoints while the stream lives, and pushes a new point whenever it changes. The application
runs each frame on its own engine at the k it holds locally and reports the latencies in batches.

Several streams share one set of clocks (a board has one clock per domain). :func:`plan` chooses
them: each stream's own best point first; if they disagree on setpoints, the clocks become the
lowest setpoints of the table at or above what each stream needs on every domain (a higher clock
never makes a frame slower), and every stream then takes its best point at those clocks. Requests
and leases meanwhile choose among the rows of those setpoints only (the machine pins them), so
nobody changes the clocks under a stream's frames.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from governor.core.decision.optimiser import Decision, DecisionTable, Demand

__all__ = ["KEEP_POINTS", "StreamState", "plan"]

KEEP_POINTS = 8  # a stream's last points kept by their sequence number: a batch names the one it ran at


@dataclass
class StreamState:
    """One open stream: its per-frame budget, period (ms), latency scale per table group (its own
    ``expected_ms``; None: the table's), the point in force and its sequence number, and counts (frames
    reported, within the deadline, failed)."""

    key: Hashable
    budget: Demand
    period_ms: float
    scale: list[float] | None
    decision: Decision
    seq: int = 0
    points: dict[int, Decision] = field(default_factory=dict)
    frames: int = 0
    latency_sum_ms: float = 0.0
    met: int = 0
    failed: int = 0

    def __post_init__(self) -> None:
        self.points[self.seq] = self.decision

    def move_to(self, decision: Decision) -> bool:
        """Make ``decision`` the stream's point; True when it changed what the application runs (row)."""
        if decision.index == self.decision.index:
            self.decision = decision  # same row: the prediction may have moved, the application need not know
            self.points[self.seq] = decision
            return False
        self.seq += 1
        self.decision = decision
        self.points[self.seq] = decision
        for old in [s for s in self.points if s <= self.seq - KEEP_POINTS]:
            del self.points[old]
        return True

    def group_scale(self, table: DecisionTable, row: int) -> float:
        """This stream's latency over the table's for ``row``'s group (1 without its own latencies)."""
        return 1.0 if self.scale is None else float(self.scale[int(table.group_of[row])])


Decide = Callable[[StreamState, int | None], Decision]  # (stream, pinned setpoint id or None) -> its point


def plan(streams: Sequence[StreamState], table: DecisionTable, decide: Decide) -> tuple[int, dict[Hashable, Decision]]:
    """The setpoints (a ``table.setpoint_id``) all ``streams`` run at, and each stream's point at them.

    ``decide(stream, pin)`` is the planner's choice for one stream's budget, among the rows of setpoint
    ``pin`` (None: all rows). See the module doc for the rule."""
    own = {s.key: decide(s, None) for s in streams}
    ids = {int(table.setpoint_id[d.index]) for d in own.values()}
    if len(ids) == 1:
        return ids.pop(), own
    need: dict[str, int] = {}
    for decision in own.values():
        for name, hz in decision.point.setpoints.hz.items():
            need[name] = max(need.get(name, 0), hz)
    shared = _lowest_covering(table.setpoints, need)
    if shared is None:  # no setpoints of the table cover them all: the first opened stream's clocks
        shared = int(table.setpoint_id[own[streams[0].key].index])
    return shared, {s.key: decide(s, shared) for s in streams}


def _lowest_covering(setpoints: Sequence[Mapping[str, int]], need: Mapping[str, int]) -> int | None:
    """The setpoint id at or above ``need`` (Hz) on every domain with the smallest sum of relative clocks."""
    best, best_cost = None, float("inf")
    for i, sp in enumerate(setpoints):
        if all(sp.get(name, 0) >= hz for name, hz in need.items()):
            cost = sum(sp.get(name, 0) / max(hz, 1) for name, hz in need.items())
            if cost < best_cost:
                best, best_cost = i, cost
    return best
