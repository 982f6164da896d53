"""The scheduler: requests in, operating points out, outcomes back. Pure; the daemon loop drives it.

Theory of operation
-------------------
State lives here and changes only through four calls, in the order of the daemon's tick:

* :meth:`Scheduler.observe` takes an :class:`~governor.core.types.Observation` (live load, actual
  clocks, temperatures) plus how busy *we* kept each unit since the previous observation, and keeps
  what others are doing (``util - own``) and which clocks are capped (a domain whose read-back
  maximum is below its table top, or that runs below the frequency we pinned: thermal capping).
* :meth:`Scheduler.submit` queues a request; :meth:`Scheduler.next_request` pops the one with the
  earliest absolute deadline (EDF); requests without a deadline go after those with one, in order.
* :meth:`Scheduler.decide` corrects the nominal table for contention and learned residuals, takes
  the time already spent waiting off the deadline, and asks the optimiser.
* :meth:`Scheduler.feedback` feeds the measured latency back into the residual tracker.

The current setpoints and the previous choice are remembered so the optimiser charges DVFS
transition time and applies hysteresis; that is how consecutive requests share setpoints instead
of thrashing.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from governor.core.feedback import ResidualTracker, contention_multiplier
from governor.core.optimise import Budget, Decision, Optimiser
from governor.core.types import Observation

__all__ = ["PendingRequest", "Scheduler"]

_CAP_TOLERANCE = 0.02  # read-back within 2 % of the pinned frequency counts as "not capped"


@dataclass(frozen=True)
class PendingRequest:
    key: object  # opaque to the core: the transport's request identity
    budget: Budget
    arrival_t: float  # seconds, the daemon clock
    strict: bool = False

    @property
    def due_t(self) -> float:
        if self.budget.deadline_ms is None:
            return float("inf")
        return self.arrival_t + self.budget.deadline_ms / 1000.0


@dataclass
class Scheduler:
    optimiser: Optimiser
    unit_kind: Mapping[str, str]
    unit_cores: Mapping[str, int]
    table_max_hz: Mapping[str, int]
    residuals: ResidualTracker = field(init=False)
    others_util: dict[str, float] = field(default_factory=dict)
    caps_hz: dict[str, int] = field(default_factory=dict)
    pinned_hz: dict[str, int] = field(default_factory=dict)
    last_t: float = 0.0
    _queue: list[tuple[float, int, PendingRequest]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _previous: int | None = None
    _current_setpoints: int | None = None
    _asked_hz: dict[str, int] = field(default_factory=dict)  # the setpoints of the row applied last
    _mult: npt.NDArray[np.float64] | None = None
    residual_alpha: float = 0.2
    min_margin: float = 0.02
    max_margin: float = 2.0

    def __post_init__(self) -> None:
        self.residuals = ResidualTracker(
            len(self.optimiser.table.groups),
            alpha=self.residual_alpha,
            min_margin=self.min_margin,
            max_margin=self.max_margin,
        )

    # -- observations -------------------------------------------------------------------------
    def observe(self, obs: Observation, own_busy: Mapping[str, float] | None = None,
                held: Collection[str] = ()) -> None:
        """``held``: units whose reading is ours, not others' (an accelerator's load file averages a short
        recent window, so right after our own run it reads our work); their estimate is kept as it was."""
        own = own_busy or {}
        self.last_t = obs.t
        previous = self.others_util
        self.others_util = {u: previous.get(u, 0.0) if u in held else max(0.0, float(v) - float(own.get(u, 0.0)))
                            for u, v in obs.util.items()}
        caps: dict[str, int] = {}
        for name, reading in obs.domains.items():
            # Pinning by limits sets max to the clock we asked for: that max is ours, not a cap (else the
            # first low pin would cap every later choice); only a max below our request is someone else's.
            asked = self._asked_hz.get(name)
            ceiling = asked * (1 - _CAP_TOLERANCE) if asked else self.table_max_hz.get(name)
            if ceiling is not None and reading.max_hz < ceiling:
                caps[name] = reading.max_hz
            pinned = self.pinned_hz.get(name)
            if pinned and reading.cur_hz < pinned * (1 - _CAP_TOLERANCE):
                caps[name] = min(caps.get(name, reading.cur_hz), reading.cur_hz)
        self.caps_hz = caps
        self._mult = None

    def applied(self, row: int, readback_hz: Mapping[str, int]) -> None:
        """The daemon applied the setpoints of ``row``; ``readback_hz`` is what the kernel accepted."""
        self._current_setpoints = int(self.optimiser.table.setpoint_id[row])
        self.pinned_hz = dict(readback_hz)
        self._asked_hz = dict(self.optimiser.table.points[row].setpoints.hz)

    def released(self) -> None:
        """The daemon dropped the clocks it pinned (idle): no setpoints of the table are in force."""
        self._current_setpoints = None
        self.pinned_hz = {}
        self._asked_hz = {}

    # -- queue ----------------------------------------------------------------------------------
    def submit(self, request: PendingRequest) -> None:
        heapq.heappush(self._queue, (request.due_t, next(self._seq), request))

    def next_request(self) -> PendingRequest | None:
        return heapq.heappop(self._queue)[2] if self._queue else None

    def pending(self) -> int:
        return len(self._queue)

    # -- decisions ------------------------------------------------------------------------------
    def multiplier(self) -> npt.NDArray[np.float64]:
        """Contention (from the last observation) times learned residuals, per table group."""
        if self._mult is None:  # cleared by observe() and feedback(), the only inputs that change it
            table = self.optimiser.table
            contention = contention_multiplier(table.groups, self.others_util, self.unit_kind, self.unit_cores)
            self._mult = contention * self.residuals.multiplier()
        return self._mult

    @property
    def current_setpoints(self) -> int | None:
        """``table.setpoint_id`` of the setpoints applied last (None before the first apply)."""
        return self._current_setpoints

    def decide(
        self, budget: Budget, *, now: float | None = None, arrival_t: float | None = None, remember: bool = True
    ) -> Decision:
        """Choose a point; time waited since ``arrival_t`` (seconds) is taken off the deadline.

        ``remember=False`` (advice only) leaves the hysteresis anchor where it was."""
        if budget.deadline_ms is not None and now is not None and arrival_t is not None:
            waited_ms = max(0.0, (now - arrival_t) * 1000.0)
            budget = replace(budget, deadline_ms=max(budget.deadline_ms - waited_ms, 1e-6))
        decision = self.optimiser.decide(
            budget,
            multiplier=self.multiplier(),
            margin=self.residuals.margin(),
            caps_hz=self.caps_hz or None,
            current_setpoints=self._current_setpoints,
            previous=self._previous,
        )
        if remember:
            self._previous = decision.index
        return decision

    def reset_learning(self) -> None:
        """Forget learned residuals and margin (e.g. on reload)."""
        self.residuals.reset()
        self._mult = None

    def feedback(self, decision: Decision, measured_latency_ms: float) -> None:
        """Learn from one outcome (latency in ms, as measured around the inference)."""
        table = self.optimiser.table
        group = int(table.group_of[decision.index])
        contention = contention_multiplier(
            [table.groups[group]], self.others_util, self.unit_kind, self.unit_cores
        )[0]
        self.residuals.update(group, float(table.latency_ms[decision.index]) * contention, measured_latency_ms)
        self._mult = None
