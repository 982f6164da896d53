"""The planner: what the governor has learned of the board, and the point it chooses for one budget. Pure.

Theory of operation
-------------------
The governor machine (:mod:`governor.core.decision.machine`) owns one planner and is its only
caller; the request queue and the idle-clock policy are the machine's. The planner's state changes
only through these calls, in the order of the machine's events:

* `Planner.observe` takes an :class:`~governor.core.types.Observation` (live load, actual
  clocks, temperatures) plus how busy *we* kept each unit since the previous observation, and keeps
  what others are doing (``util - own``) and which clocks are capped (a domain whose read-back
  maximum is below its table top, or that runs below the frequency we pinned: thermal capping).
* :meth:`Planner.decide` corrects the nominal table for contention and learned residuals, takes
  the time already spent waiting off the deadline, and asks the optimiser.
* :meth:`Planner.feedback` feeds the measured latency back into the residual tracker;
  :meth:`Planner.dispatched` and :meth:`Planner.switched` the costs around a run the profile never
  saw (dispatch overhead, DVFS transition time).

Queued requests are paced together: the head of the queue gets the tighter of its own deadline and
``(due_j - now) / (j + 2)`` for the j-th request behind it, counted from 0 (each would take about as
long; the machine passes their due times), so a slow, cheap run does not push the rest of a burst
past their deadlines. If that pace is out of reach the head falls back to its own deadline.

Idle floor: when the daemon hands the clocks back while idle (``charge_idle``), the board's idle
power is paid whatever we choose, so the optimiser is told it (``floor_mw``) and minimises energy
above it. The floor is learned here from observations taken after at least two idle ticks with no
setpoints of ours in force and nobody else busy (a power sensor averages over its last window), read
from the meter the table's energy came from (``observe``'s ``power_mw``; else the power sensors).

The current setpoints and the previous choice are remembered so the optimiser charges DVFS
transition time and applies hysteresis; that is how consecutive requests share setpoints instead
of thrashing.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from governor.core.decision.feedback import ResidualTracker, oversubscribed, row_contention, sorted_quantile
from governor.core.decision.optimiser import NO_TIME_LEFT_MS, Contention, Decision, Demand, Optimiser
from governor.core.types import Observation

__all__ = ["Planner"]

_CAP_TOLERANCE = 0.02  # read-back within 2 % of the pinned frequency counts as "not capped"
_QUIET_UTIL = 0.05  # others' utilisation below this counts as nobody else running
_INFER_RATIO = 1.15  # a held accelerator run this far off its prediction reveals others' share


def _within_tolerance(ratio: float) -> bool:
    """A run within :data:`_INFER_RATIO` of its prediction, either way, says nothing new about others."""
    return 1.0 / _INFER_RATIO <= ratio <= _INFER_RATIO


@dataclass
class Planner:
    optimiser: Optimiser
    unit_kind: Mapping[str, str]
    unit_cores: Mapping[str, int]
    table_max_hz: Mapping[str, int]
    residuals: ResidualTracker = field(init=False)
    others_util: dict[str, float] = field(default_factory=dict)
    caps_hz: dict[str, int] = field(default_factory=dict)
    pinned_hz: dict[str, int] = field(default_factory=dict)
    last_t: float = 0.0
    _previous: int | None = None
    _current_setpoints: int | None = None
    _asked_hz: dict[str, int] = field(default_factory=dict)  # the setpoints of the row applied last
    _mult: npt.NDArray[np.float64] | None = None
    residual_alpha: float = 0.2
    min_margin: float = 0.02
    max_margin: float = 2.0
    unit_domain: Mapping[str, str] = field(default_factory=dict)  # the DVFS domain clocking each unit
    others_hz: dict[str, int] = field(default_factory=dict)  # each unit's clock when others_util was read
    charge_idle: bool = False
    idle_floor_mw: float = 0.0
    floor_alpha: float = 0.2
    _idle_ticks: int = 0
    _rows: tuple[object, tuple[str, ...], npt.NDArray[np.int64], npt.NDArray[np.float64],
                 npt.NDArray[np.float64]] | None = None
    _contention: Contention | None = None
    _contention_stale: bool = True
    _held: frozenset[str] = frozenset()
    _unread: frozenset[str] = frozenset()  # units the last observation had no load reading for
    # A share our runs revealed on a unit with no load reading fades with this half-life (s): once we stop
    # running there nothing else would ever show the co-runner gone, and the unit would be avoided forever.
    unread_half_life_s: float = 2.0
    _revealed: dict[str, tuple[float, float]] = field(default_factory=dict)  # unit -> (share, obs time s)
    # What lockstep threads that did not fit beside others cost, per CPU unit, beyond the share model
    # (feedback.py); it fades toward 1 with this half-life (s), so oversubscription is tried again.
    lockstep_half_life_s: float = 30.0
    _lockstep: dict[str, tuple[float, float]] = field(default_factory=dict)  # unit -> (multiplier, time s)
    # The last outcomes' dispatch overheads (ms): decision to end of run, minus the run itself.
    _dispatch: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    # The same for leases: grant to release, minus the application's run (its two messages, its own work).
    _lease_dispatch: deque[float] = field(default_factory=lambda: deque(maxlen=64))
    lease_dispatch_ms: float = 0.0
    _switch_seen: bool = False

    def __post_init__(self) -> None:
        mappings = {(unit, threads): i for i, (unit, threads) in enumerate(dict.fromkeys(
            (unit, threads) for unit, threads, _k in self.optimiser.table.groups))}
        self.residuals = ResidualTracker(
            len(self.optimiser.table.groups),
            mapping_of=[mappings[(unit, threads)] for unit, threads, _k in self.optimiser.table.groups],
            alpha=self.residual_alpha,
            min_margin=self.min_margin,
            max_margin=self.max_margin,
        )

    # -- observations -------------------------------------------------------------------------
    def observe(self, obs: Observation, own_busy: Mapping[str, float] | None = None,
                held: Collection[str] = (), power_mw: float | None = None) -> None:
        """``held``: units whose reading is ours, not others' (an accelerator's load file averages a short
        recent window, so right after our own run it reads our work); their estimate is kept as it was.
        ``power_mw``: the board's power in the terms the table's energy was measured in (mW), for the
        idle floor; None: the sensors' ``obs.total_power_mw``."""
        own = own_busy or {}
        self.last_t = obs.t
        self._held = frozenset(held)
        self._unread = frozenset(u for u in self.unit_kind if u not in obs.util)
        previous = self.others_util
        # A unit with no load reading at all (the XU3's Mali on devfreq kernels has no load file) keeps the
        # share our own runs' slowdown revealed (_infer_share), fading: dropping it each tick made the next
        # choice a low clock that the co-runner crushed, over and over.
        self._revealed = {u: seen for u, seen in self._revealed.items() if u not in obs.util}
        self.others_util = {}
        for unit, (share, since) in self._revealed.items():
            faded = share * 0.5 ** (max(obs.t - since, 0.0) / self.unread_half_life_s)
            self.others_util[unit] = faded if faded >= 0.01 else 0.0
        self.others_util.update({u: previous.get(u, 0.0) if u in held else max(0.0, float(v) - float(own.get(u, 0.0)))
                                 for u, v in obs.util.items()})
        for unit, domain in self.unit_domain.items():
            reading = obs.domains.get(domain)
            if reading is not None and unit not in held and unit in obs.util:
                self.others_hz[unit] = reading.cur_hz
        self._contention_stale = True
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
        self._learn_floor(obs.total_power_mw if power_mw is None else power_mw, own)

    def others_quiet(self) -> bool:
        """Nobody else keeps any unit busy (as of the last observation and our runs' slowdowns)."""
        return all(v < _QUIET_UTIL for v in self.others_util.values())

    def _learn_floor(self, power: float | None, own: Mapping[str, float]) -> None:
        quiet = (self._current_setpoints is None and not any(v > 0.0 for v in own.values())
                 and self.others_quiet())
        self._idle_ticks = self._idle_ticks + 1 if quiet else 0
        if self._idle_ticks < 2 or power is None or power <= 0.0:
            return
        a = self.floor_alpha
        self.idle_floor_mw = float(power) if not self.idle_floor_mw else (1 - a) * self.idle_floor_mw + a * power

    def applied(self, row: int, readback_hz: Mapping[str, int]) -> None:
        """The daemon applied the setpoints of ``row``; ``readback_hz`` is what the kernel accepted."""
        self._current_setpoints = int(self.optimiser.table.setpoint_id[row])
        self.pinned_hz = dict(readback_hz)
        self._asked_hz = dict(self.optimiser.table.points[row].setpoints.hz)

    def released(self, parked_hz: Mapping[str, int] | None = None) -> None:
        """The daemon dropped the clocks it pinned (idle): no setpoints of the table are in force.

        ``parked_hz``: the limits it parked the domains at (Hz). Their maxima are ours, not a thermal
        cap; forgetting that made every run after an idle spell stay at the parked clocks."""
        self._current_setpoints = None
        self.pinned_hz = {}
        self._asked_hz = dict(parked_hz or {})

    # -- decisions ------------------------------------------------------------------------------
    def multiplier(self) -> npt.NDArray[np.float64]:
        """Learned residuals per table group (contention is per row: :meth:`contention`)."""
        if self._mult is None:  # cleared by feedback() and reset_learning(), the only inputs that change it
            self._mult = self.residuals.multiplier()
        return self._mult

    def contention(self) -> Contention | None:
        """(key, per-row latency multiplier) from the last observation; None when nobody else is busy.

        Shares are rounded to 2 % so that a steady co-runner keeps one key (and one set of fronts)."""
        if not self._contention_stale:
            return self._contention
        self._contention_stale = False
        shares = self._shares()
        lockstep = self._lockstep_now()
        key = tuple(sorted((u, v, self.others_hz.get(u, 0), lockstep.get(u, 1.0)) for u, v in shares.items() if v > 0))
        if not key:
            self._contention = None
        elif (self._contention is None or self._contention[0] != key or self._rows is None
              or self._rows[0] is not self.optimiser.table):  # a reload brings a new table: new rows
            _table, units, unit_of, threads, row_hz = self._row_info()
            mult = row_contention(units, threads, row_hz, shares, self.others_hz, self.unit_kind, self.unit_cores,
                                  unit_of, lockstep)
            self._contention = (key, mult)
        return self._contention

    def _shares(self) -> dict[str, float]:
        return {u: round(v * 50) / 50 for u, v in self.others_util.items() if v >= 0.01}

    def _lockstep_now(self) -> dict[str, float]:
        """The learned lockstep multipliers, faded geometrically toward 1, to 5 % steps (so they key a cache)."""
        out = {}
        for unit, (penalty, since) in self._lockstep.items():
            faded = penalty ** (0.5 ** (max(self.last_t - since, 0.0) / self.lockstep_half_life_s))
            if faded >= 1.05:
                out[unit] = round(faded * 20) / 20
        return out

    def _row_info(self) -> tuple[object, tuple[str, ...], npt.NDArray[np.int64], npt.NDArray[np.float64],
                                 npt.NDArray[np.float64]]:
        """Per table row: unit index, threads and the clock it sets on its unit's domain (0 = none)."""
        table = self.optimiser.table
        if self._rows is None or self._rows[0] is not table:
            units = tuple(dict.fromkeys(p.unit for p in table.points))
            index = {u: i for i, u in enumerate(units)}
            unit_of = np.array([index[p.unit] for p in table.points], dtype=np.int64)
            threads = np.array([p.threads for p in table.points], dtype=np.float64)
            row_hz = np.array([p.setpoints.hz.get(self.unit_domain.get(p.unit, ""), 0) for p in table.points],
                              dtype=np.float64)
            self._rows = (table, units, unit_of, threads, row_hz)
        return self._rows

    @property
    def current_setpoints(self) -> int | None:
        """``table.setpoint_id`` of the setpoints applied last (None before the first apply)."""
        return self._current_setpoints

    def decide(
        self, budget: Demand, *, now: float | None = None, arrival_t: float | None = None, remember: bool = True,
        behind: Sequence[float] = (), scale: Sequence[float] | None = None, lease: bool = False,
        stream: bool = False, pin: int | None = None, previous: int | Literal["shared"] | None = "shared",
    ) -> Decision:
        """Choose a point; time waited since ``arrival_t`` (seconds) is taken off the deadline.

        ``behind``: the due times (s, ascending) of the requests queued behind this one, for pacing.
        ``remember=False`` (advice only) leaves the hysteresis anchor where it was. ``scale``: per table
        group, a factor on top of the learned residuals for this decision alone (a lease's own latencies).
        ``lease``: the run is the application's, so the time around it is a lease's (:meth:`lease_dispatched`);
        ``stream``: a stream's frame, timed by the application around its engine alone (nothing around it).
        ``pin``: choose among the rows of these setpoints only (a ``table.setpoint_id``: the clocks streams
        hold), unless clock caps leave none of them. ``previous``: the hysteresis anchor (a table row, or
        None) instead of the shared one (a stream keeps its own)."""
        dispatch_ms = 0.0 if stream else self.lease_dispatch_ms if lease else None
        anchor = self._previous if previous == "shared" else previous
        asked_ms, waited_ms = budget.deadline_ms, 0.0
        if budget.deadline_ms is not None and now is not None and arrival_t is not None:
            waited_ms = max(0.0, (now - arrival_t) * 1000.0)
            budget = replace(budget, deadline_ms=max(budget.deadline_ms - waited_ms, NO_TIME_LEFT_MS))
        paced = self._paced(budget, now, behind)
        decision = self._optimise(paced, scale, pin, anchor, dispatch_ms)
        if decision.infeasible and paced is not budget:
            # the queue's pace is out of reach: serve the head on its own
            decision = self._optimise(budget, scale, pin, anchor, dispatch_ms)
        if decision.infeasible and waited_ms > 0.0:
            # The deadline the optimiser saw is what was left; say what was asked and where the rest went.
            decision = replace(decision, reason=f"{decision.reason} (the request asked for {asked_ms:g} ms and "
                               f"had waited {waited_ms:.3g} ms in the daemon's queue since it arrived)")
        if remember:
            self._previous = decision.index
        return decision

    def _optimise(self, budget: Demand, scale: Sequence[float] | None = None, pin: int | None = None,
                  previous: int | None = None, dispatch_ms: float | None = None) -> Decision:
        multiplier = self.multiplier() if scale is None else self.multiplier() * np.asarray(scale, np.float64)
        try:
            return self.optimiser.decide(
                budget,
                multiplier=multiplier,
                margin=self.residuals.margins(),
                caps_hz=self.caps_hz or None,
                current_setpoints=self._current_setpoints,
                previous=previous,
                floor_mw=self.idle_floor_mw if self.charge_idle else 0.0,
                contention=self.contention(),
                pin_setpoints=pin,
                dispatch_ms=dispatch_ms,
            )
        except ValueError:
            if pin is None:
                raise
            # A thermal cap leaves none of the pinned rows: the caps win over the streams' clocks.
            return self._optimise(budget, scale, None, previous, dispatch_ms)

    def _paced(self, budget: Demand, now: float | None, behind: Sequence[float]) -> Demand:
        """``budget`` with its deadline tightened so the requests queued behind it can keep theirs."""
        if budget.deadline_ms is None or now is None or not behind:
            return budget
        pace = min((due - now) * 1000.0 / (j + 2) for j, due in enumerate(behind))
        if pace >= budget.deadline_ms:
            return budget
        return replace(budget, deadline_ms=max(pace, NO_TIME_LEFT_MS))

    def _infer_share(self, decision: Decision, contention: float, ratio: float) -> bool:
        """An accelerator whose load reading was ours (``held``), or that has none, cannot show a co-runner;
        our own run can.

        A run slower (or faster) than the model, its learned bias and the assumed contention by more than
        :data:`_INFER_RATIO` says others hold share ``1 - 1/(contention x ratio)`` of the unit at the
        run's clock. That becomes the unit's observed share (clock-aware from there on) instead of a
        residual, which would be clock-blind. ``ratio`` is measured over expected (:meth:`feedback`).
        Returns True when it did."""
        unit = decision.point.unit
        if (unit not in self._held and unit not in self._unread) or self.unit_kind.get(unit) == "cpu":
            return False
        if _within_tolerance(ratio):
            self._confirm(unit, contention)
            return False
        self.others_util[unit] = max(0.0, 1.0 - 1.0 / (contention * ratio))
        if unit in self._unread:
            self._revealed[unit] = (self.others_util[unit], self.last_t)
        hz = float(self._row_info()[4][decision.index])
        if hz > 0:
            self.others_hz[unit] = int(hz)
        self._contention_stale = True
        return True

    def _learn_lockstep(self, decision: Decision, ratio: float) -> bool:
        """A CPU run whose threads did not fit beside others (:func:`oversubscribed`) and missed its prediction
        by more than :data:`_INFER_RATIO` tells what lockstep costs on that unit now: the multiplier for such
        rows becomes what this run showed. Kept out of the residuals, which would charge every later run of
        the group for a situation it may not be in. Returns True when it learned."""
        unit = decision.point.unit
        if self.unit_kind.get(unit) != "cpu":
            return False
        cores = max(int(self.unit_cores.get(unit, 1)), 1)
        if not oversubscribed(decision.point.threads, self._shares().get(unit, 0.0), cores) or _within_tolerance(ratio):
            return False
        self._lockstep[unit] = (max(1.0, self._lockstep_now().get(unit, 1.0) * ratio), self.last_t)
        self._contention_stale = True
        return True

    def _confirm(self, unit: str, contention: float) -> None:
        """A run that kept to a prediction made with a co-runner on a unit with no load reading shows the
        co-runner still there, when the run could tell: without one it would have been faster than the
        tolerance allows (``contention`` > :data:`_INFER_RATIO` squared). Its revealed share is then held
        where it was seen, and fades again from now. Left fading while runs kept confirming it, the share
        dropped below the truth and made a higher clock look cheaper than it was, every few runs."""
        seen = self._revealed.get(unit)
        if seen is None or unit not in self._unread or contention <= _INFER_RATIO ** 2:
            return
        self._revealed[unit] = (seen[0], self.last_t)
        self.others_util[unit] = seen[0]
        self._contention_stale = True

    def dispatched(self, overhead_ms: float) -> None:
        """One run's dispatch overhead (ms): from the decision to the end of the run, minus the run's own
        latency. Every later prediction pays the 90th percentile of the last 64 (``Optimiser.dispatch_ms``):
        on a 2-core host it is ~0.1-0.3 ms, which the profile never saw and a 0.7 ms deadline cannot spare."""
        if not math.isfinite(overhead_ms):
            return
        self._dispatch.append(max(overhead_ms, 0.0))
        self.optimiser.dispatch_ms = sorted_quantile(sorted(self._dispatch), 0.9)

    def lease_dispatched(self, overhead_ms: float) -> None:
        """One lease's overhead (ms): from its grant to its release's arrival, minus the application's run.
        The deadline runs to the release, so later leases pay the 90th percentile of the last 64: on this
        2-core host 0.3-1.5 ms, and a 2 ms deadline that ignored it was missed half the time."""
        if not math.isfinite(overhead_ms):
            return
        self._lease_dispatch.append(max(overhead_ms, 0.0))
        self.lease_dispatch_ms = sorted_quantile(sorted(self._lease_dispatch), 0.9)

    def switched(self, took_ms: float) -> None:
        """One change of setpoints took ``took_ms`` (ms) of writes and read-backs: every later point whose
        setpoints differ from those in force pays the moving average (``Optimiser.switch_ms``). Called only
        when the switch time is measured (the config's ``switch_ms`` < 0)."""
        if not math.isfinite(took_ms):
            return
        o = self.optimiser
        o.switch_ms = took_ms if not self._switch_seen else 0.8 * o.switch_ms + 0.2 * took_ms
        self._switch_seen = True

    def reset_learning(self) -> None:
        """Forget learned residuals, margin and lockstep costs (e.g. on reload)."""
        self.residuals.reset()
        self._lockstep.clear()
        self._contention_stale = True
        self._mult = None

    def feedback(self, decision: Decision, measured_latency_ms: float) -> None:
        """Learn from one outcome (latency in ms, as measured around the inference)."""
        table = self.optimiser.table
        group = int(table.group_of[decision.index])
        rows = self.contention()
        contention = 1.0 if rows is None else float(rows[1][decision.index])
        predicted = float(table.latency_ms[decision.index]) * contention  # before the learned residual
        ratio = measured_latency_ms / max(predicted * float(self.multiplier()[group]), 1e-9)
        if self._infer_share(decision, contention, ratio) or self._learn_lockstep(decision, ratio):
            return
        self.residuals.update(group, predicted, measured_latency_ms)
        self._mult = None
