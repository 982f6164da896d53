"""The daemon's loop: one tick of sensors -> observation -> decision -> actuators -> inference -> feedback.

Theory of operation
-------------------
One thread does everything, so no state is shared. Each turn of :meth:`Daemon.step`:

1. on a tick (``tick_hz``), sample the board, hand the observation (and how busy *we* kept each
   unit since the last tick) to the scheduler, publish it as telemetry, ping the watchdog;
2. take at most one request from the transport (waiting only until the next tick when idle):
   ``hello``, ``advise``, ``status``, ``profiles`` and ``reload`` are answered at once, ``infer``
   is queued (EDF); malformed requests get a typed error reply and change nothing;
3. run the queued request with the earliest deadline: decide, apply the setpoints through the
   drivers (the read-back is what the scheduler remembers), run, feed the measured latency back,
   reply, publish.

A resend of an ``infer`` (same id, same bytes) still queued joins it, and one already answered is
answered again from memory (docs/protocol.md §10, :mod:`governor.daemon.requests`), so a retried
``infer`` never runs twice; another request under a used id is a request of its own.

Why one module of ~400 lines: it is the loop and the only owner of its state (queue, reply cache,
busy time, last observation); splitting the handlers out would hand that state around instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governor import __version__
from governor.core import protocol as p
from governor.core.board import BoardSpec
from governor.core.decision.optimiser import Decision, Optimiser
from governor.core.decision.scheduler import PendingRequest, Scheduler
from governor.core.modelmeta import ModelMeta
from governor.core.types import Observation, Reason, Setpoints
from governor.daemon.backend import Backend
from governor.daemon.replies import core_budget, domains_info, estimate, met, model_interface, wire_observation
from governor.daemon.requests import RequestKey, RequestMemory, request_key
from governor.daemon.tables import MeasuredTable

__all__ = ["Daemon", "DaemonParts"]

log = logging.getLogger("governor.daemon")

_DRAIN_MAX = 64  # messages taken per step before the next run: bounds how long a run can be held back
_IDLE_GRACE_S = 0.002  # the idle policy waits this long after a run for the next request, s
_WOKE_S = 0.0005  # a poll that took longer than this blocked, so its message arrived as it returned
# Layer outputs one request may need at once: a bigger batch could exhaust a 4 GB board's memory (or
# hold the single loop for minutes), so it is refused with the largest batch that fits.
_MAX_BATCH_ACTIVATION_BYTES = 256 * 2**20


@dataclass
class DaemonParts:
    """Everything the loop needs, built by the composition root (:mod:`governor.daemon.app`)."""

    spec: BoardSpec
    board: Any  # drivers' Board (sample/apply)
    backend: Backend
    meta: ModelMeta
    model_name: str
    table: MeasuredTable
    server: Any  # recv(timeout_ms) / send(identity, frames) / publish(frames) / is_empty(), the last two optional
    clock: Callable[[], float] = time.monotonic
    tick_hz: float = 10.0
    max_bytes: int = p.MAX_MESSAGE_BYTES
    max_queue: int = 256
    hysteresis: float = 0.05
    switch_ms: float = 0.0  # DVFS transition time charged to a change of setpoints, ms; negative = measure it
    telemetry_endpoint: str | None = None
    simulated: bool = False
    cpu_count: int = 1
    watchdog: Callable[[], object] = lambda: None
    watchdog_interval_s: float = 0.0
    metrics: Any = None
    min_margin: float = 0.02
    max_margin: float = 2.0
    residual_alpha: float = 0.2
    idle_clocks: str = "release"  # when nothing is queued: "release" to the kernel, park at "lowest", or "keep"
    park_s: float = 0.15  # release: park at the lowest clocks this long first when nobody else is busy, s
    # (the config's policy.park_ms default, 150 ms)
    table_hz: dict[str, tuple[int, ...]] = field(default_factory=dict)  # available Hz per domain
    unavailable: tuple[str, ...] = ()


@dataclass
class _Queued:
    request: p.InferRequest
    batch: np.ndarray
    identity: Any
    key: RequestKey | None  # how resends of it are recognised (None without an id)


@dataclass
class Daemon:
    parts: DaemonParts
    served: int = 0
    last_obs: Observation | None = None
    last_wire: Observation | None = None  # last_obs as the protocol can carry it (see wire_observation)
    last_point: p.Point | None = None
    _started: float = field(default=0.0, init=False)
    _next_tick: float = field(default=0.0, init=False)
    _next_watchdog: float = field(default=0.0, init=False)
    _busy_s: dict[str, float] = field(default_factory=dict, init=False)
    _seq: int = field(default=0, init=False)
    _queued: dict[int, _Queued] = field(default_factory=dict, init=False)  # by our own counter, not the client's id
    _next_key: int = field(default=0, init=False)
    _requests: RequestMemory = field(default_factory=RequestMemory, init=False)
    _key: RequestKey | None = field(default=None, init=False)  # of the infer being received
    _interface: p.ModelInterface | None = field(default=None, init=False)
    _not_set: dict[str, str] = field(default_factory=dict, init=False)  # domain -> why its last write failed
    # Clients repeat the same request headers but for the id: each decoded in full once (docs/protocol.md).
    _memo: p.HeaderMemo = field(default_factory=p.HeaderMemo, init=False)
    _polled_at: float = field(default=0.0, init=False)  # when the socket was last seen empty, daemon clock s
    _arrival_t: float = field(default=0.0, init=False)
    _switch_seen: bool = field(default=False, init=False)
    idle_at: float | None = field(default=None, init=False)  # when the idle policy runs, daemon clock s
    # (when, domains): clocks parked at their lowest go back to the kernel governors then (daemon clock, s)
    _parked: tuple[float, tuple[str, ...]] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        parts = self.parts
        units = {u.name: u for u in parts.spec.units}
        self.scheduler = Scheduler(
            Optimiser(parts.table.table, hysteresis=parts.hysteresis, switch_ms=max(parts.switch_ms, 0.0)),
            unit_kind={n: u.kind for n, u in units.items()},
            unit_cores={n: len(u.cpus) or (parts.cpu_count if u.kind == "cpu" else 1) for n, u in units.items()},
            table_max_hz={d.name: max(d.table_hz) for d in parts.spec.domains if d.table},
            residual_alpha=parts.residual_alpha, min_margin=parts.min_margin, max_margin=parts.max_margin,
            charge_idle=parts.idle_clocks != "keep", idle_floor_mw=parts.table.idle_power_mw or 0.0,
            unit_domain={n: u.domain for n, u in units.items() if u.domain},
        )
        self._release_hz = _limits_in_force(parts.board)
        self._started = parts.clock()
        self._last_tick_t = self._polled_at = self._started

    # -- the loop -------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.parts.clock()
        if now >= self._next_tick:
            self.tick(now)
        wake = self._next_tick if self.idle_at is None else min(self._next_tick, self.idle_at)
        wait_ms = 0 if self.scheduler.pending() else max(0, math.ceil((wake - self.parts.clock()) * 1000))
        self._drain(wait_ms)
        if self.scheduler.pending():
            self.run_next()
        else:
            self.idle_if_due(self.parts.clock())

    def idle_if_due(self, now: float) -> None:
        """Run the idle policy once its grace after the last run has passed with nothing queued."""
        if self.idle_at is not None and now >= self.idle_at and not self.scheduler.pending():
            self.idle_at = None
            self._idle()

    def _drain(self, wait_ms: int) -> None:
        """Take every message waiting (up to a bound) so EDF and pacing see the whole queue, not one.

        A message found already waiting arrived at some time since the previous poll ended (the
        daemon was running); that poll's end is taken as its arrival, which can only overstate how
        long it waited, so its deadline is never overestimated. One that came while the daemon polled
        (the socket was empty as the poll began, or the poll blocked) arrived as the poll returned: a
        poll, blocking or spinning, returns within microseconds of a message. Stamped at the poll's
        start instead, a request was charged the poll's spin (up to half a millisecond) as waiting,
        and 1 ms deadlines looked infeasible."""
        since = self._polled_at  # the socket was last known empty then
        before = self.parts.clock()
        empty = self._socket_empty()  # still empty now: whatever the poll returns arrives after this instant
        got = self.parts.server.recv(wait_ms)
        returned = self.parts.clock()
        if got is not None and (empty or returned - before > _WOKE_S):
            since = returned
        taken = 0
        while got is not None:
            identity, frames = got
            self.receive(identity, frames, arrival_t=since)
            taken += 1
            if taken >= _DRAIN_MAX:
                break  # fetch nothing more: a message taken off the socket must be handled (it was once lost)
            got = self.parts.server.recv(0)
        self._polled_at = self.parts.clock()

    def tick(self, now: float) -> None:
        obs = self.parts.board.sample()
        interval = max(now - self._last_tick_t, 1e-3)
        own = {u: min(1.0, busy / interval) for u, busy in self._busy_s.items()}
        # CPU load is a /proc/stat difference over exactly this interval, so our share can be taken off;
        # accelerator load files average a short recent window that our last run fills.
        held = [u for u in own if self.scheduler.unit_kind.get(u) != "cpu"]
        self._busy_s.clear()
        self._last_tick_t = now
        self.scheduler.observe(obs, own, held, self.parts.backend.power_mw())
        if self._parked is not None and not self.scheduler.pending() and (
                now >= self._parked[0] or not self.scheduler.others_quiet()):
            self._hand_back(self._parked[1])  # parked long enough, or someone else now needs the clocks
        self.last_obs = obs
        self.last_wire = wire_observation(obs)
        self._publish(p.TelemetryObservation.from_observation(self.last_wire, self._next_seq()))
        if self.parts.metrics is not None:
            self.parts.metrics.observation(obs)
        self._next_tick = now + 1.0 / self.parts.tick_hz
        if self.parts.watchdog_interval_s and now >= self._next_watchdog:
            self.parts.watchdog()
            self._next_watchdog = now + self.parts.watchdog_interval_s

    # -- requests -------------------------------------------------------------------------------
    def receive(self, identity: Any, frames: list[Any], arrival_t: float | None = None) -> None:
        """Handle one message; ``arrival_t`` (daemon clock, s) is when it arrived if known, else now."""
        self._arrival_t = self.parts.clock() if arrival_t is None else arrival_t
        try:
            msg, tensors = p.decode_request(frames, max_bytes=self.parts.max_bytes, memo=self._memo)
        except p.ProtocolError as exc:
            self._send(identity, exc.to_reply())
            return
        except Exception as exc:  # the decoder promises ProtocolError only; a slip must not stop the daemon
            log.exception("the decoder raised %s", type(exc).__name__)
            self._send(identity, p.ErrorReply(code="internal", message=f"cannot decode the request: "
                                              f"{type(exc).__name__}: {str(exc)[:500]}; see the daemon's log"))
            return
        self._key = request_key(msg.id, frames) if msg.type == "infer" else None
        if self._answer_resend(self._key, identity):
            return
        try:
            handler = _HANDLERS[msg.type]
            handler(self, msg, tensors, identity)
            if msg.type != "infer":
                self._count(msg.type, "met")
        except p.ProtocolError as exc:
            self._count(msg.type, "infeasible" if exc.code == "infeasible" else "rejected")
            # A full queue is "retry shortly": the same request sent again later must be tried again.
            self._send(identity, exc.to_reply(), key=None if exc.code == "unavailable" else self._key)
        except Exception as exc:  # a bug must cost one reply, never the daemon
            self._count(msg.type, "error")
            log.exception("internal error while handling %s", msg.type)
            self._send(identity, p.ErrorReply(id=msg.id, code="internal",
                                              message=f"{type(exc).__name__}: {str(exc)[:500]}; see the daemon's log"))

    def _answer_resend(self, key: RequestKey | None, identity: Any) -> bool:
        """True when this is a resend of a request queued or answered: it joins it, or gets its reply again."""
        if self._requests.join(key, identity):
            return True
        frames = self._requests.recall(key, self.parts.clock())
        if frames is not None:
            self.parts.server.send(identity, frames)
            return True
        return False

    def _hello(self, msg: p.HelloRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        newer = p.speaks(msg.v, 1)  # 1.1 fields only to a peer that reads them (a 1.0 decoder refuses them)
        self._send(identity, p.HelloReply(
            id=msg.id, server=f"dnn-governor {__version__}", board=self.parts.spec.name,
            simulated=self.parts.simulated, telemetry_endpoint=self.parts.telemetry_endpoint,
            max_bytes=self.parts.max_bytes, model=self.parts.model_name if newer else None,
            interface=self.interface if newer else None))

    @property
    def interface(self) -> p.ModelInterface:
        """What the served model takes and gives (protocol 1.1)."""
        if self._interface is None:
            self._interface = model_interface(self.parts.meta, self.max_batch)
        return self._interface

    def _status(self, msg: p.StatusRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        obs = self.last_wire
        self._send(identity, p.StatusReply(
            id=msg.id, server=f"dnn-governor {__version__}", board=self.parts.spec.name,
            simulated=self.parts.simulated, uptime_s=max(0.0, self.parts.clock() - self._started),
            model=self.parts.model_name, point=self.last_point, domains=domains_info(obs),
            total_power_mw=obs.total_power_mw if obs else None,
            temps_c=dict(obs.temps_c) if obs else {}, served=self.served,
            unavailable=(*self.parts.unavailable, *(obs.unavailable if obs else ()), *self._not_set.values())))

    def _profiles(self, msg: p.ProfilesRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        meta = self.parts.meta
        accuracy = tuple(lv.accuracy for lv in meta.levels)
        info = p.ProfileInfo(
            model=self.parts.model_name, board=self.parts.spec.name, groups=meta.groups,
            points=len(self.parts.table.table), simulated=self.parts.simulated,
            accuracy=accuracy if all(a is not None for a in accuracy) else (),  # type: ignore[arg-type]
            interface=self.interface if p.speaks(msg.v, 1) else None)
        self._send(identity, p.ProfilesReply(id=msg.id, profiles=(info,), active=self.parts.model_name))

    def _reload(self, msg: p.ReloadRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        self.scheduler.reset_learning()
        self._send(identity, p.ReloadReply(
            id=msg.id, loaded=(),
            message=f"nothing was re-read from disk: the run-time corrections learned for {self.parts.model_name} "
                    "(latency residuals, margins, co-runner shares) were reset; restart the daemon (systemctl "
                    "restart governor) to load a new model or profile"))

    def _advise(self, msg: p.AdviseRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        decision = self._decide(msg, remember=False)
        self._send(identity, p.AdviseReply(
            id=msg.id, point=p.Point.from_operating_point(decision.point),
            predicted=estimate(decision, energy_known=self.parts.table.energy_measured),
            budget_infeasible=decision.infeasible, simulated=self.parts.simulated))

    def _infer(self, msg: p.InferRequest, tensors: dict[str, np.ndarray], identity: Any) -> None:
        self._check_budget(msg)
        if self.scheduler.pending() >= self.parts.max_queue:
            raise p.ProtocolError("unavailable", f"{self.parts.max_queue} requests are queued; retry shortly",
                                  request_id=msg.id)
        batch = self._input(msg, tensors)
        key = self._next_key
        self._next_key += 1
        self._queued[key] = _Queued(msg, batch, identity, self._key)
        self._requests.queued(self._key, identity)
        self.scheduler.submit(PendingRequest(key, core_budget(msg.budget), self._arrival_t, msg.strict))

    def _input(self, msg: p.InferRequest, tensors: dict[str, np.ndarray]) -> np.ndarray:
        if len(tensors) != 1:
            raise p.ProtocolError("bad_request", f"send exactly one input tensor, not {len(tensors)}",
                                  request_id=msg.id)
        arr = next(iter(tensors.values()))
        want = tuple(self.parts.meta.input_shape)
        if arr.shape == want:
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != want or arr.shape[0] < 1:
            shape = ", ".join(map(str, want))
            raise p.ProtocolError("bad_request", f"input has shape {list(arr.shape)}; model "
                                  f"{self.parts.model_name} takes (N, {shape}) or ({shape})", request_id=msg.id)
        if arr.shape[0] > self.max_batch:
            raise p.ProtocolError("too_large", f"a batch of {arr.shape[0]} inputs is more than this daemon runs at "
                                  f"once ({self.max_batch} for {self.parts.model_name}); split it into several "
                                  "requests", request_id=msg.id)
        if arr.dtype.kind not in "fiu":
            raise p.ProtocolError("bad_request", f"input dtype {arr.dtype} is not numeric; send float32",
                                  request_id=msg.id)
        # The frame is read-only and the request may sit in the queue: own a float32 copy (inputs are small).
        with np.errstate(over="ignore"):
            batch = np.array(arr, dtype=np.float32)
        if not np.all(np.isfinite(batch)):  # checked after the cast: 1e300 as float64 becomes inf
            raise p.ProtocolError("bad_request", "input holds NaN or infinity, or values beyond float32 (±3.4e38)",
                                  request_id=msg.id)
        return batch

    @property
    def max_batch(self) -> int:
        """The most inputs one ``infer`` may carry: what fits in ``_MAX_BATCH_ACTIVATION_BYTES`` of layer outputs."""
        per_input = max((level.activation_bytes for level in self.parts.meta.levels), default=0)
        return max(1, _MAX_BATCH_ACTIVATION_BYTES // max(per_input, 1))

    def _check_budget(self, msg: p.InferRequest | p.AdviseRequest) -> None:
        if msg.budget.energy_mj is not None and not self.parts.table.energy_measured:
            raise p.ProtocolError(
                "bad_request", f"board {self.parts.spec.name} has no power sensor the governor can read, so an "
                "energy budget cannot be honoured; drop energy_mj (or add a power source to the board catalogue)",
                request_id=msg.id)
        if msg.model is not None and msg.model != self.parts.model_name:
            raise p.ProtocolError("bad_request", f"model {msg.model!r} is not loaded; this daemon serves "
                                  f"{self.parts.model_name!r} (leave model unset)", request_id=msg.id)

    def _decide(self, msg: p.InferRequest | p.AdviseRequest, *, remember: bool, arrival_t: float | None = None,
                ) -> Decision:
        self._check_budget(msg)
        decision = self.scheduler.decide(core_budget(msg.budget), now=self.parts.clock(), arrival_t=arrival_t,
                                         remember=remember)
        if decision.infeasible and msg.strict:
            raise p.ProtocolError("infeasible", f"no operating point meets the budget: {decision.reason}; relax "
                                  "the budget or drop strict", request_id=msg.id)
        return decision

    # -- running --------------------------------------------------------------------------------
    def run_next(self) -> None:
        pending = self.scheduler.next_request()
        if pending is None:
            return
        queued = self._queued.pop(int(pending.key))  # type: ignore[call-overload]
        msg = queued.request
        try:
            deciding = self.parts.clock()
            decision = self._decide(msg, remember=True, arrival_t=pending.arrival_t)
            self._apply(decision)
            started = self.parts.clock()
            outcome = self.parts.backend.run(queued.batch, decision.point)
            ran = self.parts.clock()
        except p.ProtocolError as exc:
            self._count("infer", "infeasible" if exc.code == "infeasible" else "rejected")
            self._answer(queued, exc.to_reply())
            return
        except Exception as exc:
            log.exception("inference failed")
            self._answer(queued, p.ErrorReply(id=msg.id, code="internal",
                                              message=f"inference failed: {exc}; see the daemon's log"), keep=False)
            return
        # End to end: queueing, deciding, DVFS writes and the run. On a simulated board the run is the
        # simulator's and the writes land in a fake tree, whose file locking is no part of a real board.
        total_ms = (self.parts.clock() - pending.arrival_t) * 1000.0 if not outcome.simulated else (
            (deciding - pending.arrival_t) * 1000.0 + outcome.latency_ms)
        if self._socket_empty():
            # Nothing came in during the run, so whatever comes next arrives after this instant. Looked at
            # before the reply goes out: looked at after it, the next request of a client that waits on
            # each reply was often already there (it answers faster than we publish telemetry), and it
            # was charged the whole run as queueing, so a generous deadline looked infeasible.
            self._polled_at = self.parts.clock()
        self._reply_infer(queued, decision, outcome, total_ms)  # the client waits; learning need not
        self._account(decision, outcome.latency_ms, started)
        self.scheduler.feedback(decision, outcome.latency_ms)
        if not outcome.simulated:  # a simulated run's time is virtual: the host's overhead is no part of it
            self.scheduler.dispatched((ran - deciding) * 1000.0 - outcome.latency_ms)
        if not self.scheduler.pending():
            # The idle policy runs a moment later, not now: a client that waits on each reply asks again
            # within a fraction of a millisecond, and parking (a few ms of writes on a simulated tree) would
            # make that request wait, then pin again. A request that comes meanwhile cancels it.
            self.idle_at = self.parts.clock() + _IDLE_GRACE_S

    def _idle(self) -> None:
        """Nothing queued: stop holding clocks. Clocks pinned high while idle cost more board energy than
        the runs. ``release`` hands each domain back to its kernel governor within the limits found at
        start (it follows other processes' load and drops when the board is idle); ``lowest`` parks it."""
        mode = self.parts.idle_clocks
        if mode == "keep" or self.scheduler.current_setpoints is None:
            return
        pinned = list(self.scheduler.pinned_hz)
        park = mode == "release" and self.parts.park_s > 0 and self.scheduler.others_quiet()
        if mode == "lowest" or park:
            # Parked before handing back: a kernel governor handed the clocks right away reads our finished
            # run as load and raises them while the board idles. Parking holds back nobody: nobody else is busy.
            lowest = {name: min(self.parts.table_hz[name]) for name in pinned if self.parts.table_hz.get(name)}
            if lowest:
                self.parts.board.apply(Setpoints(lowest))
            self.scheduler.released(lowest)
            if park:
                self._parked = (self.parts.clock() + self.parts.park_s, tuple(pinned))
            return
        self._hand_back(pinned)

    def _hand_back(self, pinned: Sequence[str]) -> None:
        """Each domain back to its kernel governor, within the limits found at start."""
        self._parked = None
        for name in pinned:
            domain, limits = self.parts.board.domains.get(name), self._release_hz.get(name)
            if domain is None or limits is None:
                continue
            try:
                domain.set_range(*limits)
            except (OSError, ValueError) as exc:  # the next run pins again; say why the clock stayed
                log.warning("cannot hand %s back to its kernel governor: %s", name, exc)
        self.scheduler.released()

    def _apply(self, decision: Decision) -> None:
        self._parked = None  # a run pins again: no parked clocks left to hand back
        self.idle_at = None
        setpoints = decision.point.setpoints
        table = self.parts.table.table
        same = self.scheduler.current_setpoints == int(table.setpoint_id[decision.index])
        if not setpoints.hz or (same and not self._not_set):  # after a failed write, try again
            return
        writing = self.parts.clock()
        applied = self.parts.board.apply(setpoints)
        if self.parts.switch_ms < 0:  # measured: the writes and read-backs a change of setpoints costs
            took_ms = (self.parts.clock() - writing) * 1000.0
            optimiser = self.scheduler.optimiser
            optimiser.switch_ms = took_ms if not self._switch_seen else 0.8 * optimiser.switch_ms + 0.2 * took_ms
            self._switch_seen = True
        self.scheduler.applied(decision.index, {n: r.cur_hz for n, r in applied.items()})
        errors = getattr(applied, "errors", {})
        for name, hz in setpoints.hz.items():  # status lists what could not be set until a write succeeds
            if name in errors:
                self._not_set[name] = f"{name}: could not set {hz} Hz: {str(errors[name])[:500]}"
            else:
                self._not_set.pop(name, None)
        message = f"setpoints {dict(setpoints.hz)}" + (f"; failed: {errors}" if errors else "")
        self._publish(p.TelemetryEvent(seq=self._next_seq(), t=self.parts.clock(), simulated=self.parts.simulated,
                                       kind="setpoints", reason=Reason.CLIENT, message=message[:4000]))

    def _account(self, decision: Decision, latency_ms: float, started: float) -> None:
        unit = decision.point.unit
        cores = self.scheduler.unit_cores.get(unit, 1)
        share = min(1.0, decision.point.threads / max(cores, 1))
        self._busy_s[unit] = self._busy_s.get(unit, 0.0) + latency_ms / 1000.0 * share
        self.served += 1

    def _reply_infer(self, queued: _Queued, decision: Decision, outcome: Any, total_ms: float) -> None:
        msg = queued.request
        point = p.Point.from_operating_point(decision.point)
        self.last_point = point
        measured = p.Estimate(latency_ms=min(outcome.latency_ms, p.MAX_DEADLINE_MS),
                              energy_mj=None if outcome.energy_mj is None else min(outcome.energy_mj, p.MAX_ENERGY_MJ),
                              accuracy=decision.accuracy if 0 <= decision.accuracy <= 1 else None)
        predicted = estimate(decision, energy_known=self.parts.table.energy_measured)
        ok = met(msg.budget, total_ms, outcome.energy_mj, decision.accuracy)
        reply = p.InferReply(id=msg.id, point=point, predicted=predicted, measured=measured, budget_met=ok,
                             budget_infeasible=decision.infeasible, simulated=self.parts.simulated,
                             total_ms=min(total_ms, p.MAX_DEADLINE_MS) if p.speaks(msg.v, 1) else None)
        self._answer(queued, reply, {"output": outcome.outputs})
        self._publish(p.TelemetryInference(
            seq=self._next_seq(), t=self.parts.clock(), simulated=self.parts.simulated, id=msg.id,
            budget=msg.budget, point=point, predicted=predicted, measured=measured, budget_met=ok,
            budget_infeasible=decision.infeasible))
        if self.parts.metrics is not None:
            outcome_label = "infeasible" if decision.infeasible else ("met" if ok else "missed")
            self.parts.metrics.request("infer", outcome_label)
            self.parts.metrics.decision(decision.point, decision.latency_ms, outcome.latency_ms,
                                        predicted.energy_mj, outcome.energy_mj)

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, identity: Any, reply: p.Reply, tensors: dict[str, np.ndarray] | None = None,
              key: RequestKey | None = None) -> None:
        frames = p.encode_reply(reply, tensors)
        self.parts.server.send(identity, frames)
        self._requests.remember(key, self.parts.clock(), frames)

    def _answer(self, queued: _Queued, reply: p.Reply, tensors: dict[str, np.ndarray] | None = None,
                keep: bool = True) -> None:
        """A queued request's one reply, to every socket that asked for it (resends joined it); kept for
        later resends unless ``keep`` is False (an internal failure: a retry may succeed)."""
        frames = p.encode_reply(reply, tensors)
        for identity in self._requests.done(queued.key, queued.identity):
            self.parts.server.send(identity, frames)
        if keep:
            self._requests.remember(queued.key, self.parts.clock(), frames)

    def _socket_empty(self) -> bool:
        is_empty = getattr(self.parts.server, "is_empty", None)
        return bool(is_empty()) if is_empty is not None else False

    def _count(self, kind: str, outcome: str) -> None:
        if self.parts.metrics is not None:
            self.parts.metrics.request(kind, outcome)

    def _publish(self, msg: p.Telemetry) -> None:
        publish = getattr(self.parts.server, "publish", None)
        if publish is not None:
            publish(p.encode_telemetry(msg))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1


_HANDLERS: dict[str, Callable[..., None]] = {
    "hello": Daemon._hello,
    "status": Daemon._status,
    "profiles": Daemon._profiles,
    "reload": Daemon._reload,
    "advise": Daemon._advise,
    "infer": Daemon._infer,
}


def _limits_in_force(board: Any) -> dict[str, tuple[int, int]]:
    """Each domain's (min, max) limits in Hz before we write anything: what ``release`` hands back."""
    limits: dict[str, tuple[int, int]] = {}
    for name, domain in getattr(board, "domains", {}).items():
        try:
            reading = domain.read()
        except (OSError, ValueError):
            continue
        limits[name] = (reading.min_hz, reading.max_hz)
    return limits
