"""The governor machine: the daemon's whole decision as a pure state machine, events in, actions out.

Theory of operation
-------------------
``governor serve`` (:mod:`governor.daemon.service`) and ``governor evaluate``
(:mod:`governor.evaluate.replay`) drive this one class; they differ only in the I/O around it (a
ZeroMQ socket and the real clock, or a trace and the simulator's virtual clock). The machine owns
the request queue (EDF), the planner with everything learned at run time (residuals, margins,
others' shares and clocks, thermal caps, lockstep costs, dispatch and switch costs, the idle power
floor), which setpoints are in force, and the idle-clock policy. It has no clock, no sockets and no
torch: every event carries its timestamp ``t`` (seconds, the driver's clock), and every choice is a
function of the events seen so far.

Events and the actions they return (each a list, carried out in order by the driver):

=================  ==========================================================================
event              actions
=================  ==========================================================================
``Request``        an ``infer``, a lease (``acquire``) or a stream (``stream_open``): queued
                   (nothing), or ``Refuse`` (queue full, 16 streams open, energy budget on a
                   board without a power sensor, ``expected_ms`` not one per k); an ``advise``:
                   ``Reply`` with the decision (``total_ms`` None), or ``Refuse`` (strict and
                   infeasible)
``Ready``          the driver has taken every message waiting at ``t``: nothing while a lease is
                   outstanding (the board is the application's); else for the EDF head,
                   ``Apply`` (only when its setpoints differ from those in force, or a write
                   failed) then ``Run`` (an infer), ``Grant`` (a lease: the application runs
                   it) or ``Push`` (a stream opened: its first point), or ``Refuse`` (strict
                   and infeasible); while streams live, every choice keeps their setpoints;
                   with nothing queued and no stream, once the idle grace has passed, the idle
                   policy: ``Apply`` of the lowest clocks (park) or ``Release`` (hand the
                   clocks to the kernel governors)
``Applied``        the read-back of an ``Apply``: ``Publish`` of the setpoints event
``Outcome``        a ``Run`` finished, or a lease was released with the application's latency:
                   ``Reply`` (end-to-end time included); learning from it happens before the
                   next event is handled, so the reply is not held back
``Failed``         a ``Run`` raised: ``Refuse`` with code ``internal``; a lease released as
                   failed: nothing. Nothing is learned either way
``Expired``        a lease's time ran out before its release, or a stream went silent: nothing
                   (nothing is learned; the idle policy follows as after any run, or after the
                   last stream)
``Reported``       a stream's frames (latencies at its point ``seq``, failures): nothing; learned
                   before the next event, and the streams' points are chosen again at the next
                   ``Ready`` (``Apply`` of the shared clocks, ``Push`` to each stream that moved)
``StreamClosed``   nothing; the other streams are planned again, or the idle policy follows
``Tick``           an observation: ``Publish`` of it, and ``Release`` when parked clocks are
                   due back (parked long enough, or someone else now needs them)
=================  ==========================================================================

Leases: an application that owns its inference engine asks for a point (``Request`` with ``lease``);
at its turn the machine sets the clocks and grants it, and the board is busy exactly as during a run
of its own until the lease's ``Outcome`` (the application's measured latency, learned per (mapping,
k) like any run), ``Failed`` or ``Expired``. ``expected_ms`` (the application's latency per k at the
top clocks) scales the table's rows of each k for that lease, and its outcome is learned relative to
that scaled prediction. The time around a lease's run (grant to release, minus the run: its two
messages and the application's own work) is learned apart from this loop's dispatch overhead, and
later leases pay it, since their deadline runs to the release.

Streams (:mod:`governor.core.decision.streams`): a standing budget per frame. At its turn a stream's
point is chosen with the other open streams' (one set of clocks for all) and answered with ``Push``;
the board is not held busy, but the clocks are: every other choice is made among the rows of the
streams' setpoints, and the idle policy waits. Reported frames are learned like runs; a stream whose
best point changed gets a new ``Push`` with the next ``seq``.

``wake_at`` says when the machine next wants a ``Ready`` with nothing arrived (the idle grace), so
the driver can bound its wait; ``pending`` is the queue's length.

Time accounting: a request's deadline runs from its ``Request.t`` (its arrival as the driver knows
it). The time it waited until its ``Ready`` is taken off its deadline; the end-to-end time in the
reply is from arrival to ``Outcome.t``, or, for a simulated run whose latency is virtual, to the
decision plus the simulated latency (the host's own overhead is no part of the board's time). The
dispatch overhead (decision to end of run, minus the run) is learned from real runs only.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from governor.core.decision.optimiser import Decision, DecisionTable, Demand, Objective, Optimiser
from governor.core.decision.planner import Planner
from governor.core.decision.streams import StreamState, plan
from governor.core.types import Observation, Setpoints

__all__ = [
    "Action", "Applied", "Apply", "BoardFacts", "Event", "Expired", "Failed", "GovernorMachine", "Grant",
    "MachineSettings", "Outcome", "Publish", "Push", "Queued", "Ready", "Refuse", "Release", "Reply", "Reported",
    "Request", "Run", "StreamClosed", "Tick",
]

IdleClocks = Literal["release", "lowest", "keep"]
MAX_STREAMS = 16  # streams open at once: each is a standing claim on the clocks
_ADVISED_MAX = 64  # distinct budgets remembered between state changes (an application uses a few)
RefuseCode = Literal["infeasible", "unavailable", "bad_request", "internal"]  # the protocol's error codes used here


# -- what the machine is told once -----------------------------------------------------------------
@dataclass(frozen=True)
class MachineSettings:
    """The policy knobs; no defaults here: they live in one place, the config's ``[policy]`` and
    ``[daemon]`` sections (``governor.daemon.config.machine_settings``)."""

    hysteresis: float  # keep the previous point while within this relative distance of the best
    switch_ms: float  # DVFS transition time charged to a change of setpoints, ms; negative = measure it
    min_margin: float  # safety margin bounds, relative
    max_margin: float
    residual_alpha: float  # weight of a new outcome in the residual's moving average
    idle_clocks: IdleClocks  # nothing queued: "release" to the kernel governors, park at "lowest", or "keep"
    park_s: float  # release: park at the lowest clocks this long first when nobody else is busy, s
    idle_grace_s: float  # the idle policy waits this long after a run for the next request, s
    max_queue: int  # infer requests queued at most
    objective: Objective  # for a request whose budget names none (the wire's budget leaves it out)


@dataclass(frozen=True)
class BoardFacts:
    """What the machine knows of the board and the table it serves (all fixed while serving)."""

    board: str
    unit_kind: Mapping[str, str]  # unit -> "cpu" | "gpu" | "dla"
    unit_cores: Mapping[str, int]  # unit -> cores (1 for an accelerator)
    unit_domain: Mapping[str, str]  # unit -> the DVFS domain that clocks it
    top_hz: Mapping[str, int]  # domain -> the table's top clock, Hz
    lowest_hz: Mapping[str, int]  # domain -> the lowest available clock (where idle clocks park), Hz
    energy_measured: bool  # the table's energy comes from a power sensor (an energy budget can be honoured)
    idle_power_mw: float  # the profile's idle power, the floor's first value, mW (0 = unknown)


# -- events ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """An ``infer`` or a lease (queued) or an ``advise`` (answered at once) that arrived at ``t`` (s).

    ``lease``: the application runs it on its own engine (``Grant`` instead of ``Run``); ``expected_ms``: a
    lease's (or stream's) own latency per k = 1..G at the top clocks (ms), or None (the table's);
    ``stream``: open a stream (``budget`` per frame, a frame every ``period_ms``): at its turn its point is
    chosen and set, and ``Push`` answers it."""

    t: float
    key: Hashable  # the driver's name for it; every action about it carries it back
    budget: Demand
    strict: bool = False
    advise: bool = False
    lease: bool = False
    expected_ms: tuple[float, ...] | None = None
    stream: bool = False
    period_ms: float | None = None


@dataclass(frozen=True)
class Ready:
    """The driver has taken every message waiting and can act at ``t`` (s)."""

    t: float


@dataclass(frozen=True)
class Applied:
    """What an ``Apply`` did at ``t`` (s): read-back clocks (Hz), how long the writes took (ms), and the
    domains whose write failed (domain -> why)."""

    t: float
    apply: Apply
    readback_hz: Mapping[str, int]
    took_ms: float
    errors: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """A ``Run`` ended, or a lease was released, at ``t`` (s): the measured latency (ms) and energy (mJ, None
    unmeasured); ``simulated``: the latency is a simulator's (virtual), not the host's."""

    t: float
    key: Hashable
    latency_ms: float
    energy_mj: float | None = None
    simulated: bool = False


@dataclass(frozen=True)
class Failed:
    """A ``Run`` (or its ``Apply``) raised, or a lease was released as failed, at ``t`` (s); ``why`` says what
    happened."""

    t: float
    key: Hashable
    why: str


@dataclass(frozen=True)
class Expired:
    """Lease ``key`` was not released before its time ran out (``t``, s, the driver's clock)."""

    t: float
    key: Hashable


@dataclass(frozen=True)
class Tick:
    """An observation of the board at ``t`` (s); ``power_mw`` the board's power in the terms the
    table's energy was measured in (None: the observation's sensors)."""

    t: float
    observation: Observation
    power_mw: float | None = None


@dataclass(frozen=True)
class Reported:
    """Stream ``key``'s application ran frames at its point number ``seq`` (a ``Push``'s): their latencies
    (ms, as it measured them around its engine) and how many failed, reported at ``t`` (s)."""

    t: float
    key: Hashable
    seq: int
    latencies_ms: tuple[float, ...]
    failed: int = 0


@dataclass(frozen=True)
class StreamClosed:
    """Stream ``key`` ended at ``t`` (s): closed by its application (a stream that went silent is ``Expired``)."""

    t: float
    key: Hashable


Event = Request | Ready | Applied | Outcome | Failed | Expired | Tick | Reported | StreamClosed


# -- actions -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Apply:
    """Write these setpoints; ``row`` is the table row they belong to (None: parking at the lowest)."""

    setpoints: Setpoints
    row: int | None


@dataclass(frozen=True)
class Run:
    """Run request ``key`` at ``decision.point`` (its setpoints already applied)."""

    key: Hashable
    decision: Decision


@dataclass(frozen=True)
class Grant:
    """Lease ``key`` may run now at ``decision.point`` (its setpoints already applied): the application runs
    ``decision.point.groups`` groups on its own engine, and the board is busy until its ``Outcome``,
    ``Failed`` or ``Expired``."""

    key: Hashable
    decision: Decision


@dataclass(frozen=True)
class Reply:
    """Answer ``key``: ``decision`` is what was chosen; ``total_ms`` the end-to-end time (arrival to the end
    of its run, ms) of an infer, None for advice; ``outcome`` the run's measurement."""

    key: Hashable
    decision: Decision
    total_ms: float | None = None
    outcome: Outcome | None = None


@dataclass(frozen=True)
class Refuse:
    """Refuse ``key``: ``code`` is the protocol's error code (``infeasible``, ``unavailable``,
    ``bad_request``), ``message`` says why and what to do."""

    key: Hashable
    code: RefuseCode
    message: str


@dataclass(frozen=True)
class Release:
    """Hand these domains back to their kernel governors, within the limits found at start."""

    domains: tuple[str, ...]


@dataclass(frozen=True)
class Publish:
    """Telemetry: ``kind`` is ``observation`` (``observation`` set) or ``setpoints`` (``message`` set)."""

    kind: Literal["observation", "setpoints"]
    observation: Observation | None = None
    message: str = ""


@dataclass(frozen=True)
class Push:
    """Stream ``key``'s point is now ``decision.point`` (its setpoints already applied), point number ``seq``;
    ``opened``: the first, which answers the stream's ``Request``."""

    key: Hashable
    decision: Decision
    seq: int
    opened: bool = False


Action = Apply | Run | Grant | Reply | Refuse | Release | Publish | Push


@dataclass(frozen=True)
class Queued:
    """A request waiting in the machine's queue (times in s)."""

    key: Hashable
    budget: Demand
    arrival_t: float
    strict: bool = False
    lease: bool = False
    expected_ms: tuple[float, ...] | None = None
    stream: bool = False
    period_ms: float | None = None

    @property
    def due_t(self) -> float:
        if self.budget.deadline_ms is None:
            return float("inf")
        return self.arrival_t + self.budget.deadline_ms / 1000.0


# -- the machine -------------------------------------------------------------------------------------
class GovernorMachine:
    """See the module doc. ``planner`` may be given (the evaluation's oracle brings its own)."""

    def __init__(self, table: DecisionTable, facts: BoardFacts, settings: MachineSettings,
                 planner: Planner | None = None) -> None:
        self.facts, self.settings = facts, settings
        self.planner = planner if planner is not None else Planner(
            Optimiser(table, hysteresis=settings.hysteresis, switch_ms=max(settings.switch_ms, 0.0)),
            unit_kind=facts.unit_kind, unit_cores=facts.unit_cores, table_max_hz=facts.top_hz,
            residual_alpha=settings.residual_alpha, min_margin=settings.min_margin, max_margin=settings.max_margin,
            charge_idle=settings.idle_clocks != "keep", idle_floor_mw=facts.idle_power_mw,
            unit_domain=facts.unit_domain,
        )
        self._queue: list[tuple[float, int, Queued]] = []
        self._seq = itertools.count()
        # key -> (request, decision, decided t, its latency scale: expected_ms over the table's, 1 without)
        self._running: dict[Hashable, tuple[Queued, Decision, float, float]] = {}
        self._unlearned: list[tuple[Decision, Outcome, float, bool, float]] = []  # replied to, learned next event
        self._fastest: dict[int, float] | None = None  # k -> the table's fastest latency for it, ms
        self._busy_s: dict[str, float] = {}  # core-weighted seconds our runs kept each unit busy since the tick
        self._last_tick_t: float | None = None
        self._failed: dict[str, str] = {}  # domain -> why its last write failed (retried at the next run)
        self.idle_at: float | None = None  # when the idle policy runs, s
        self._parked: tuple[float, tuple[str, ...]] | None = None  # (until s, domains) parked at their lowest
        self._streams: dict[Hashable, StreamState] = {}  # open streams, in the order they opened
        self._stream_setpoints: int | None = None  # the table.setpoint_id the streams hold (None: no stream)
        self._replan_due = False  # a stream reported or closed: its point is chosen again at the next Ready
        self._unlearned_frames: list[tuple[Decision, float, float]] = []  # (point, latency ms, its scale)
        # Advice given since the state last changed, by (demand, streams' setpoints): an application asks
        # with the same few budgets between runs, and the decision is a function of the state (advice
        # reads no clock and moves no anchor). Any other event, or learning, may change it: it is cleared.
        self._advised: dict[tuple[Demand, int | None], Decision] = {}

    # -- what the driver may ask ----------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Requests queued (not yet run)."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """A lease is outstanding: nothing else starts until its ``Outcome``, ``Failed`` or ``Expired``."""
        return bool(self._running)

    def wake_at(self) -> float | None:
        """When the machine wants a ``Ready`` though nothing arrives (s), or None."""
        return self.idle_at if not self._queue else None

    @property
    def table(self) -> DecisionTable:
        return self.planner.optimiser.table

    @property
    def not_set(self) -> Mapping[str, str]:
        """Domains whose last write failed, with why (until a write succeeds)."""
        return dict(self._failed)

    @property
    def streams(self) -> Mapping[Hashable, StreamState]:
        """The open streams by key (read only: for status and tests)."""
        return dict(self._streams)

    def queued(self) -> list[Queued]:
        """The queue in EDF order (for status and tests)."""
        return [q for _, _, q in sorted(self._queue)]

    def settle(self) -> None:
        """Learn from the outcomes already replied to, now rather than at the next event: the driver calls it
        when it has nothing to do (a request that arrives meanwhile would otherwise pay for the learning).
        Either way the state at the next event is the same."""
        self._settle()

    def reset_learning(self) -> None:
        """Forget what was learned from outcomes (residuals, margins, lockstep costs)."""
        self._settle()
        self.planner.reset_learning()
        self._advised.clear()

    # -- events ---------------------------------------------------------------------------------
    def handle(self, event: Event) -> list[Action]:
        """Take one event; return what to do, in order (module doc)."""
        if self._last_tick_t is None:
            self._last_tick_t = getattr(event, "t", None)  # own busy time is counted from the first event seen
        self._settle()
        if isinstance(event, Request):
            if not event.advise:
                self._advised.clear()
            return self._request(event)
        if isinstance(event, Ready):
            return self._ready(event.t)
        self._advised.clear()
        if isinstance(event, Applied):
            return self._applied(event)
        if isinstance(event, Outcome):
            return self._outcome(event)
        if isinstance(event, Tick):
            return self._tick(event)
        if isinstance(event, Failed):
            return self._failed_run(event)
        if isinstance(event, Expired):
            return self._expired(event)
        if isinstance(event, Reported):
            return self._reported(event)
        if isinstance(event, StreamClosed):
            return self._stream_ended(event.t, event.key)
        raise TypeError(f"not an event of the governor machine: {type(event).__name__}")

    def _request(self, r: Request) -> list[Action]:
        if r.budget.energy_mj is not None and not self.facts.energy_measured:
            return [Refuse(r.key, "bad_request", f"board {self.facts.board} has no power sensor the governor can "
                           "read, so an energy budget cannot be honoured; drop energy_mj (or add a power source "
                           "to the board catalogue)")]
        if r.advise:
            memo = (r.budget, self._stream_setpoints)
            decision = self._advised.get(memo)
            if decision is None:
                decision = self.planner.decide(r.budget, now=r.t, remember=False, pin=self._stream_setpoints)
                if len(self._advised) < _ADVISED_MAX:
                    self._advised[memo] = decision
            if decision.infeasible and r.strict:
                return [_infeasible(r.key, decision)]
            return [Reply(r.key, decision)]
        if r.expected_ms is not None and len(r.expected_ms) != len(self._fastest_ms()):
            return [Refuse(r.key, "bad_request", f"expected_ms lists {len(r.expected_ms)} latencies but the model "
                           f"has {len(self._fastest_ms())} groups: give one per k = 1..{len(self._fastest_ms())} "
                           "(ms, at the top clocks), or leave it out")]
        if len(self._queue) >= self.settings.max_queue:
            return [Refuse(r.key, "unavailable", f"{self.settings.max_queue} requests are queued; retry shortly")]
        if r.stream and len(self._streams) + sum(q.stream for _, _, q in self._queue) >= MAX_STREAMS:
            return [Refuse(r.key, "unavailable", f"{MAX_STREAMS} streams are open, as many as the daemon holds "
                           "at once; close one (or run frames through leases)")]
        q = Queued(r.key, r.budget, r.t, r.strict, r.lease, r.expected_ms if r.lease or r.stream else None,
                   r.stream, r.period_ms)
        heapq.heappush(self._queue, (q.due_t, next(self._seq), q))
        return []

    def _ready(self, t: float) -> list[Action]:
        if self._running:
            return []  # a lease holds the board: the application is running
        if not self._queue and not self._replan_due and (self.idle_at is None or t < self.idle_at):
            return []  # the driver says Ready after every batch of messages: this one changes nothing
        self._advised.clear()
        actions: list[Action] = self._replan() if self._replan_due else []
        if not self._queue:
            return actions or (self._idle(t) if self.idle_at is not None and t >= self.idle_at else [])
        _due, _n, q = heapq.heappop(self._queue)
        if q.stream:
            return actions + self._open_stream(q)
        behind = sorted(due for due, _, _ in self._queue if due != float("inf"))
        scale = self._scale(q.expected_ms)
        decision = self.planner.decide(q.budget, now=t, arrival_t=q.arrival_t, remember=True, behind=behind,
                                       scale=scale, lease=q.lease, pin=self._stream_setpoints)
        if decision.infeasible and q.strict:
            return [*actions, _infeasible(q.key, decision)]
        self._parked, self.idle_at = None, None  # a run pins again: nothing parked to hand back
        setpoints = decision.point.setpoints
        same = self.planner.current_setpoints == int(self.table.setpoint_id[decision.index])
        if setpoints.hz and (not same or self._failed):  # after a failed write, try again
            actions.append(Apply(setpoints, decision.index))
        group_scale = 1.0 if scale is None else float(scale[int(self.table.group_of[decision.index])])
        self._running[q.key] = (q, decision, t, group_scale)
        actions.append(Grant(q.key, decision) if q.lease else Run(q.key, decision))
        return actions

    # -- streams ----------------------------------------------------------------------------------
    def _open_stream(self, q: Queued) -> list[Action]:
        """A stream's turn: choose its point together with the open streams' (:func:`streams.plan`), set the
        clocks, and answer it. Its frames come later, so the time it waited is not taken off its budget."""
        budget = q.budget
        if budget.deadline_ms is None and q.period_ms:  # a frame that outlasts the period holds the next one up
            budget = replace(budget, deadline_ms=q.period_ms)
        scale = self._scale(q.expected_ms)
        provisional = self.planner.decide(budget, remember=False, scale=scale, stream=True, previous=None)
        if provisional.infeasible and q.strict:
            return [_infeasible(q.key, provisional)]
        opened = StreamState(q.key, budget, q.period_ms or 0.0, scale, provisional)
        self._streams[q.key] = opened
        self._parked, self.idle_at = None, None  # the stream holds the clocks from now on
        actions = self._replan(opening=q.key)
        actions.append(Push(q.key, opened.decision, opened.seq, opened=True))
        return actions

    def _replan(self, opening: Hashable | None = None) -> list[Action]:
        """Choose every open stream's point again; ``Apply`` when the shared clocks change (or a write failed),
        ``Push`` to each stream whose point changed."""
        self._replan_due = False
        if not self._streams:
            return []
        streams = list(self._streams.values())
        shared, decisions = plan(streams, self.table, self._stream_decision)
        self._stream_setpoints = shared
        actions: list[Action] = []
        if shared != self.planner.current_setpoints or self._failed:
            row = next(d.index for d in decisions.values() if int(self.table.setpoint_id[d.index]) == shared)
            actions.append(Apply(self.table.points[row].setpoints, row))
        for stream in streams:
            if stream.key == opening:
                stream.decision = decisions[stream.key]  # its first point: nothing was pushed before it
                stream.points = {stream.seq: stream.decision}
            elif stream.move_to(decisions[stream.key]):
                actions.append(Push(stream.key, stream.decision, stream.seq))
        return actions

    def _stream_decision(self, stream: StreamState, pin: int | None) -> Decision:
        return self.planner.decide(stream.budget, remember=False, scale=stream.scale, stream=True, pin=pin,
                                   previous=stream.decision.index)

    def _reported(self, r: Reported) -> list[Action]:
        stream = self._streams.get(r.key)
        if stream is None:
            return []
        decision = stream.points.get(r.seq)  # None: a point too old to know; the frames are counted only
        deadline = stream.budget.deadline_ms
        for latency in r.latencies_ms:
            stream.frames += 1
            stream.latency_sum_ms += latency
            stream.met += deadline is None or latency <= deadline
            if decision is not None:
                self._unlearned_frames.append((decision, latency, stream.group_scale(self.table, decision.index)))
        stream.failed += r.failed
        self._replan_due = self._replan_due or (decision is not None and bool(r.latencies_ms))
        return []

    def _stream_ended(self, t: float, key: Hashable) -> list[Action]:
        if self._streams.pop(key, None) is None:
            return []
        if self._streams:
            self._replan_due = True  # the others may need lower clocks now
            return []
        self._stream_setpoints = None
        if not self._queue and not self._running:
            self.idle_at = t + self.settings.idle_grace_s  # the idle policy, as after any run
        return []

    def _fastest_ms(self) -> dict[int, float]:
        """k -> the table's fastest latency with k groups (ms): what a lease's ``expected_ms`` is compared with."""
        if self._fastest is None:
            fastest: dict[int, float] = {}
            for point, latency in zip(self.table.points, self.table.latency_ms, strict=True):
                fastest[point.groups] = min(fastest.get(point.groups, float("inf")), float(latency))
            self._fastest = dict(sorted(fastest.items()))
        return self._fastest

    def _scale(self, expected_ms: tuple[float, ...] | None) -> list[float] | None:
        """Per table group, the application's latency over the table's for that group's k (None: the table's)."""
        if expected_ms is None:
            return None
        fastest = self._fastest_ms()
        ratio = {k: expected / max(fastest[k], 1e-9) for k, expected in zip(fastest, expected_ms, strict=True)}
        return [ratio[k] for _unit, _threads, k in self.table.groups]

    def _applied(self, a: Applied) -> list[Action]:
        if a.apply.row is None:
            return []  # parking: released() was said when it was chosen
        if self.settings.switch_ms < 0:
            self.planner.switched(a.took_ms)
        self.planner.applied(a.apply.row, a.readback_hz)
        for name, hz in a.apply.setpoints.hz.items():  # status lists what could not be set until a write succeeds
            if name in a.errors:
                self._failed[name] = f"{name}: could not set {hz} Hz: {str(a.errors[name])[:500]}"
            else:
                self._failed.pop(name, None)
        message = f"setpoints {dict(a.apply.setpoints.hz)}" + (f"; failed: {dict(a.errors)}" if a.errors else "")
        return [Publish("setpoints", message=message[:4000])]

    def _outcome(self, o: Outcome) -> list[Action]:
        q, decision, decided_t, scale = self._running.pop(o.key)
        total_ms = ((decided_t - q.arrival_t) * 1000.0 + o.latency_ms) if o.simulated and not q.lease else (
            (o.t - q.arrival_t) * 1000.0)
        self._unlearned.append((decision, o, decided_t, q.lease, scale))
        if not self._queue:
            # The idle policy runs a moment later, not now: a client that waits on each reply asks again
            # within a fraction of a millisecond, and parking (a few ms of writes on a simulated tree) would
            # make that request wait, then pin again. A request that comes meanwhile cancels it.
            self.idle_at = o.t + self.settings.idle_grace_s
        return [Reply(o.key, decision, total_ms, o)]

    def _failed_run(self, f: Failed) -> list[Action]:
        running = self._running.pop(f.key, None)
        if not self._queue:
            self.idle_at = f.t + self.settings.idle_grace_s
        if running is not None and running[0].lease:
            return []  # the application's run failed: the driver answers its release; nothing is learned
        return [Refuse(f.key, "internal", f.why)]

    def _expired(self, e: Expired) -> list[Action]:
        if e.key in self._streams:
            return self._stream_ended(e.t, e.key)
        if self._running.pop(e.key, None) is not None and not self._queue:
            self.idle_at = e.t + self.settings.idle_grace_s  # the idle policy, as after any run
        return []

    def _settle(self) -> None:
        """Learn from the outcomes already replied to (the client waited for the reply; learning need not)."""
        if self._unlearned or self._unlearned_frames:
            self._advised.clear()
        for decision, o, decided_t, lease, scale in self._unlearned:
            self._count_busy(decision, o.latency_ms)
            # A lease that named its own latencies is learned relative to them: the residual stays the table's.
            self.planner.feedback(decision, o.latency_ms / scale)
            # A simulated run's time is virtual: the host's overhead is no part of it. The time around a
            # lease's run (its grant and release messages, the application's own work) is learned apart:
            # the deadline runs to the release, but this loop's dispatch is not in it.
            if not o.simulated:
                overhead_ms = (o.t - decided_t) * 1000.0 - o.latency_ms
                (self.planner.lease_dispatched if lease else self.planner.dispatched)(overhead_ms)
        self._unlearned.clear()
        for decision, latency_ms, scale in self._unlearned_frames:  # a stream's frames: the application's runs
            self._count_busy(decision, latency_ms)
            self.planner.feedback(decision, latency_ms / scale)
        self._unlearned_frames.clear()

    def _count_busy(self, decision: Decision, latency_ms: float) -> None:
        """A run of ours (or an application's under our point) kept its unit busy: not others' load."""
        unit = decision.point.unit
        share = min(1.0, decision.point.threads / max(self.planner.unit_cores.get(unit, 1), 1))
        self._busy_s[unit] = self._busy_s.get(unit, 0.0) + latency_ms / 1000.0 * share

    def _tick(self, tick: Tick) -> list[Action]:
        t = tick.t
        interval = max(t - (self._last_tick_t if self._last_tick_t is not None else t), 1e-3)
        own = {u: min(1.0, busy / interval) for u, busy in self._busy_s.items()}
        # CPU load is a /proc/stat difference over exactly this interval, so our share can be taken off;
        # accelerator load files average a short recent window that our last run fills.
        held = [u for u in own if self.planner.unit_kind.get(u) != "cpu"]
        self._busy_s.clear()
        self._last_tick_t = t
        self.planner.observe(tick.observation, own, held, tick.power_mw)
        actions: list[Action] = [Publish("observation", observation=tick.observation)]
        if self._parked is not None and not self._queue and (t >= self._parked[0] or not self.planner.others_quiet()):
            actions.append(self._hand_back(self._parked[1]))  # parked long enough, or someone else needs the clocks
        return actions

    # -- the idle-clock policy --------------------------------------------------------------------
    def _idle(self, t: float) -> list[Action]:
        """Nothing queued: stop holding clocks. Clocks pinned high while idle cost more board energy than
        the runs. ``release`` hands each domain back to its kernel governor within the limits found at
        start (it follows other processes' load and drops when the board is idle); ``lowest`` parks it."""
        self.idle_at = None
        mode = self.settings.idle_clocks
        if mode == "keep" or self.planner.current_setpoints is None or self._streams:  # streams hold the clocks
            return []
        pinned = tuple(self.planner.pinned_hz)
        park = mode == "release" and self.settings.park_s > 0 and self.planner.others_quiet()
        if mode == "lowest" or park:
            # Parked before handing back: a kernel governor handed the clocks right away reads our finished
            # run as load and raises them while the board idles. Parking holds back nobody: nobody else is busy.
            lowest = {name: self.facts.lowest_hz[name] for name in pinned if name in self.facts.lowest_hz}
            self.planner.released(lowest)
            if park:
                self._parked = (t + self.settings.park_s, pinned)
            return [Apply(Setpoints(lowest), None)] if lowest else []
        return [self._hand_back(pinned)]

    def _hand_back(self, domains: Sequence[str]) -> Release:
        self._parked = None
        self.planner.released()
        return Release(tuple(domains))


def _infeasible(key: Hashable, decision: Decision) -> Refuse:
    return Refuse(key, "infeasible", f"no operating point meets the budget: {decision.reason}; relax the budget or "
                  "drop strict")
