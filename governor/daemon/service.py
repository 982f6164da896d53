"""The daemon's I/O loop around the governor machine: socket, drivers and executor in, events; actions out.

Theory of operation
-------------------
Every decision (which request runs next, at which point, with which clocks; what the clocks do while
idle; what is learned from each run) is the machine's (:class:`~governor.core.decision.machine.
GovernorMachine`, pure). This loop only carries events in and actions out; ``governor evaluate``
runs this same loop on a simulated board's virtual clock (:mod:`governor.evaluate.replay`). One
thread does everything, so no state is shared. Each turn of :meth:`Daemon.step`:

1. on a tick (``tick_hz``), sample the board and hand the observation to the machine (``Tick``);
   publish it as telemetry, ping the watchdog;
2. take every message waiting (waiting only until the next tick, the machine's ``wake_at`` when
   idle, or the next lease's expiry): ``hello``, ``status``, ``profiles`` and ``reload`` are answered
   here, ``advise``, ``infer`` and ``acquire`` go to the machine (``Request``), a ``release`` goes to
   it as the lease's ``Outcome`` (or ``Failed``); malformed requests get a typed error reply and
   change nothing;
3. tell the machine the loop is free (``Ready``) and carry out what it says: ``Apply`` setpoints
   through the drivers (the read-back goes back as ``Applied``), ``Run`` the executor (what happened
   goes back as ``Outcome``), ``Grant`` a lease (its reply), ``Reply``, ``Refuse``, ``Release``
   clocks, ``Publish`` telemetry.

Leases (protocol 1.1, ``acquire``/``release``) and streams (1.2): the application runs its own engine.
Their tables live beside this loop (:mod:`governor.daemon.leases`, :mod:`governor.daemon.streams`),
which never waits for a release or a report: while a lease is outstanding it serves every other
message, and the machine starts nothing else. Each step expires the leases and streams whose time is
up on the daemon's clock (``Expired``; the machine's idle policy follows).

A resend of an ``infer`` (same id, same bytes) still queued joins it, and one already answered is
answered again from memory (docs/protocol.md §10, :mod:`governor.daemon.requests`), so a retried
``infer`` never runs twice; another request under a used id is a request of its own.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from governor import __version__
from governor.core import protocol as p
from governor.core.board import BoardSpec
from governor.core.decision import machine as m
from governor.core.decision.optimiser import Demand
from governor.core.modelmeta import ModelMeta
from governor.core.types import DomainReading, Observation, Reason, Setpoints
from governor.daemon.backend import Backend, RunOutcome
from governor.daemon.leases import LeaseDesk
from governor.daemon.metrics import Metrics, NullMetrics
from governor.daemon.replies import (
    AdviceFrames,
    InferFrames,
    domains_info,
    estimate,
    met,
    model_interface,
    to_demand,
    wire_observation,
)
from governor.daemon.requests import RequestKey, RequestMemory, request_key
from governor.daemon.streams import StreamDesk
from governor.daemon.tables import MeasuredTable

__all__ = ["BoardIO", "Daemon", "DaemonParts", "ServerIO", "assemble", "board_facts"]

log = logging.getLogger("governor.daemon")

_DRAIN_MAX = 64  # messages taken per step before the next run: bounds how long a run can be held back
_WOKE_S = 0.0005  # a poll that took longer than this blocked, so its message arrived as it returned
# Layer outputs one request may need at once: a bigger batch could exhaust a 4 GB board's memory (or
# hold the single loop for minutes), so it is refused with the largest batch that fits.
_MAX_BATCH_ACTIVATION_BYTES = 256 * 2**20
_ENDED_LEASES = 1024  # lease ids remembered after their end, to say "released already" or "expired"


class DomainIO(Protocol):
    def read(self) -> DomainReading: ...
    def available_hz(self) -> Sequence[int]: ...
    def set_range(self, min_hz: int, max_hz: int) -> object: ...


class BoardIO(Protocol):
    """The drivers' board as the loop uses it (:class:`governor.drivers.board.Board`, or the simulator's)."""

    @property
    def domains(self) -> Mapping[str, DomainIO]: ...
    def sample(self) -> Observation: ...
    def apply(self, setpoints: Setpoints) -> Mapping[str, DomainReading]: ...


class ServerIO(Protocol):
    """The request socket (:class:`governor.transport.zmq_server.ZmqServerEnd`, or in-process)."""

    def recv(self, timeout_ms: int | None = None) -> tuple[Any, list[Any]] | None: ...
    def send(self, identity: Any, frames: Sequence[Any]) -> None: ...
    def is_empty(self) -> bool: ...


def board_facts(spec: BoardSpec, table: MeasuredTable, table_hz: Mapping[str, Sequence[int]],
                cpu_count: int) -> m.BoardFacts:
    """What the machine is told of the board it serves (``table_hz``: available Hz per domain)."""
    units = {u.name: u for u in spec.units}
    return m.BoardFacts(
        board=spec.name,
        unit_kind={n: u.kind for n, u in units.items()},
        unit_cores={n: len(u.cpus) or (cpu_count if u.kind == "cpu" else 1) for n, u in units.items()},
        unit_domain={n: u.domain for n, u in units.items() if u.domain},
        top_hz={d.name: max(d.table_hz) for d in spec.domains if d.table},
        lowest_hz={name: min(hz) for name, hz in table_hz.items() if hz},
        energy_measured=table.energy_measured,
        idle_power_mw=table.idle_power_mw or 0.0,
    )


@dataclass
class DaemonParts:
    """Everything the loop needs, built by the composition root (:mod:`governor.daemon.app`) or the
    evaluation (:mod:`governor.evaluate.replay`)."""

    spec: BoardSpec
    board: BoardIO
    backend: Backend
    meta: ModelMeta
    model_name: str
    table: MeasuredTable
    server: ServerIO
    machine: m.GovernorMachine
    clock: Callable[[], float] = time.monotonic
    tick_hz: float = 10.0
    max_bytes: int = p.MAX_MESSAGE_BYTES
    telemetry: Callable[[Sequence[Any]], None] = lambda _frames: None  # publishes telemetry frames
    # Whether anyone subscribes to a topic now: telemetry nobody reads is neither built nor encoded.
    telemetry_wanted: Callable[[str], bool] = lambda _topic: True
    telemetry_endpoint: str | None = None
    simulated: bool = False
    watchdog: Callable[[], object] = lambda: None
    watchdog_interval_s: float = 0.0
    metrics: Metrics = field(default_factory=NullMetrics)
    unavailable: tuple[str, ...] = ()
    lease_ttl_ms: float = 1000.0  # a lease's life when its acquire names none ([daemon] lease_ttl_ms)
    stream_ttl_ms: float = 2000.0  # a stream ends after this long without a report ([daemon] stream_ttl_ms)


def assemble(spec: BoardSpec, board: BoardIO, backend: Backend, meta: ModelMeta, model_name: str,
             table: MeasuredTable, server: ServerIO, settings: m.MachineSettings, *,
             table_hz: Mapping[str, Sequence[int]] | None = None, cpu_count: int = 1,
             planner: Any = None, **parts: Any) -> Daemon:
    """The loop and its machine, as ``serve`` and ``evaluate`` both build them. ``table_hz``: available Hz
    per domain (default: each domain's ``available_hz()``); ``parts``: the other :class:`DaemonParts`."""
    if table_hz is None:
        table_hz = {name: tuple(dom.available_hz()) for name, dom in board.domains.items()}
    machine = m.GovernorMachine(table.table, board_facts(spec, table, table_hz, cpu_count), settings, planner)
    return Daemon(DaemonParts(spec=spec, board=board, backend=backend, meta=meta, model_name=model_name, table=table,
                              server=server, machine=machine, **parts))


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
    _seq: int = field(default=0, init=False)
    _queued: dict[int, _Queued] = field(default_factory=dict, init=False)  # by our own counter, not the client's id
    _next_key: int = field(default=0, init=False)
    _requests: RequestMemory = field(default_factory=RequestMemory, init=False)
    _key: RequestKey | None = field(default=None, init=False)  # of the infer being received
    _interface: p.ModelInterface | None = field(default=None, init=False)
    # Clients repeat the same request headers but for the id: each decoded in full once (docs/protocol.md).
    _memo: p.HeaderMemo = field(default_factory=p.HeaderMemo, init=False)
    _advice: AdviceFrames = field(default_factory=AdviceFrames, init=False)
    _infer_frames: InferFrames = field(default_factory=InferFrames, init=False)
    _polled_at: float = field(default=0.0, init=False)  # when the socket was last seen empty, daemon clock s
    _arrival_t: float = field(default=0.0, init=False)
    _outcomes: dict[Any, RunOutcome] = field(default_factory=dict, init=False)  # run -> its outputs, until replied
    _ended: OrderedDict[str, tuple[str, float]] = field(default_factory=OrderedDict, init=False)  # id -> how, ms
    leases: LeaseDesk = field(init=False)  # outstanding leases (protocol 1.1), built with the loop
    streams: StreamDesk = field(init=False)  # open streams (protocol 1.2), built with the loop

    def __post_init__(self) -> None:
        self.machine = self.parts.machine
        self._release_hz = _limits_in_force(self.parts.board)
        self._started = self.parts.clock()
        self._polled_at = self._started
        self.leases = LeaseDesk(self, self.parts.lease_ttl_ms)
        self.streams = StreamDesk(self, self.parts.stream_ttl_ms)

    # -- the loop -------------------------------------------------------------------------------
    def step(self) -> None:
        now = self.parts.clock()
        if now >= self._next_tick:
            self.tick(now)
        wake = self.machine.wake_at()
        wake = self._next_tick if wake is None else min(self._next_tick, wake)
        wake = min(wake, self.leases.next_expiry, self.streams.next_expiry)
        # A lease holds the board: what is queued waits for its release, so the loop waits for messages.
        wait_ms = 0 if self.machine.pending and not self.machine.busy else max(
            0, math.ceil((wake - self.parts.clock()) * 1000))
        self._drain(wait_ms)
        self.expire(self.parts.clock())  # after the messages: a release that arrived in time is taken
        self.ready()
        if self.parts.server.is_empty():  # nobody waits: learn from the last run now, not on the next request
            self.machine.settle()

    def ready(self, now: float | None = None) -> None:
        """Tell the machine the loop is free (at ``now``, daemon clock s; default: the clock) and carry
        out what it says: the next run, or the idle policy once due."""
        self.carry(self.machine.handle(m.Ready(self.parts.clock() if now is None else now)))

    def reset_learning(self) -> None:
        """Forget what was learned at run time (SIGHUP, the ``reload`` request)."""
        self.machine.reset_learning()

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
        empty = self.parts.server.is_empty()  # still empty now: whatever the poll returns arrives after this instant
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

    def expire(self, now: float) -> None:
        """End every lease and stream whose time is up at ``now`` (daemon clock, s)."""
        self.leases.expire(now)
        self.streams.expire(now)

    def ended_as(self, lease_id: str, how: str, ms: float) -> None:
        """Remember how lease or stream ``lease_id`` ended (``released``, ``expired``, ``closed``), to say so."""
        self._ended[lease_id] = (how, ms)
        while len(self._ended) > _ENDED_LEASES:
            self._ended.popitem(last=False)

    def tick(self, now: float) -> None:
        obs = self.parts.board.sample()
        power = self.parts.backend.power_mw()
        self.leases.record_power(power if power is not None else obs.total_power_mw)
        self.carry(self.machine.handle(m.Tick(now, obs, power)))
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
            self.send(identity, exc.to_reply())
            return
        except Exception as exc:  # the decoder promises ProtocolError only; a slip must not stop the daemon
            log.exception("the decoder raised %s", type(exc).__name__)
            self.send(identity, p.ErrorReply(code="internal", message=f"cannot decode the request: "
                                              f"{type(exc).__name__}: {str(exc)[:500]}; see the daemon's log"))
            return
        self._key = request_key(msg.id, frames) if msg.type in _REMEMBERED else None
        if self._answer_resend(self._key, identity):
            return
        try:
            handler = _HANDLERS[msg.type]
            handler(self, msg, tensors, identity)
            if msg.type not in ("infer", "acquire", "stream_open"):  # counted when answered (queued now)
                self._count(msg.type, "met")
        except p.ProtocolError as exc:
            self._count(msg.type, "infeasible" if exc.code == "infeasible" else "rejected")
            # A full queue is "retry shortly": the same request sent again later must be tried again.
            self.send(identity, exc.to_reply(), key=None if exc.code == "unavailable" else self._key)
        except Exception as exc:  # a bug must cost one reply, never the daemon
            self._count(msg.type, "error")
            log.exception("internal error while handling %s", msg.type)
            self.send(identity, p.ErrorReply(id=msg.id, code="internal",
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
        self.send(identity, p.HelloReply(
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
        newer = p.speaks(msg.v, 2)  # 1.2 fields only to a peer that reads them
        self.send(identity, p.StatusReply(
            id=msg.id, server=f"dnn-governor {__version__}", board=self.parts.spec.name,
            simulated=self.parts.simulated, uptime_s=max(0.0, self.parts.clock() - self._started),
            model=self.parts.model_name, point=self.last_point, domains=domains_info(obs),
            total_power_mw=obs.total_power_mw if obs else None,
            temps_c=dict(obs.temps_c) if obs else {}, served=self.served,
            unavailable=(*self.parts.unavailable, *(obs.unavailable if obs else ()), *self.machine.not_set.values()),
            leases=len(self.leases) if newer else 0, streams=len(self.streams) if newer else 0))

    def _profiles(self, msg: p.ProfilesRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        meta = self.parts.meta
        accuracy = tuple(lv.accuracy for lv in meta.levels)
        info = p.ProfileInfo(
            model=self.parts.model_name, board=self.parts.spec.name, groups=meta.groups,
            points=len(self.parts.table.table), simulated=self.parts.simulated,
            accuracy=accuracy if all(a is not None for a in accuracy) else (),  # type: ignore[arg-type]
            interface=self.interface if p.speaks(msg.v, 1) else None)
        self.send(identity, p.ProfilesReply(id=msg.id, profiles=(info,), active=self.parts.model_name))

    def _reload(self, msg: p.ReloadRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        self.reset_learning()
        self.send(identity, p.ReloadReply(
            id=msg.id, loaded=(),
            message=f"nothing was re-read from disk: the run-time corrections learned for {self.parts.model_name} "
                    "(latency residuals, margins, co-runner shares) were reset; restart the daemon (systemctl "
                    "restart governor) to load a new model or profile"))

    def _advise(self, msg: p.AdviseRequest, _t: dict[str, np.ndarray], identity: Any) -> None:
        self.check_model(msg)
        actions = self.machine.handle(m.Request(self.parts.clock(), msg.id, self.demand(msg.budget), msg.strict,
                                                advise=True))
        for action in actions:
            if isinstance(action, m.Refuse):
                raise p.ProtocolError(action.code, action.message, request_id=msg.id)
            if isinstance(action, m.Reply):
                self.parts.server.send(identity, self._advice.frames(
                    msg.id, action.decision, energy_known=self.parts.table.energy_measured,
                    simulated=self.parts.simulated, accuracy_known=self.parts.meta.accuracies_known))

    def _infer(self, msg: p.InferRequest, tensors: dict[str, np.ndarray], identity: Any) -> None:
        self.check_model(msg)
        if not self.parts.backend.runs_models:
            raise p.ProtocolError("bad_request", "this daemon runs no model (engine = external): your application "
                                  "runs it; ask for a lease (acquire, then release with the latency you "
                                  "measured) or for advice", request_id=msg.id)
        batch = self._input(msg, tensors)
        key = self._next_key
        refused = [a for a in self.machine.handle(m.Request(self._arrival_t, key, self.demand(msg.budget),
                                                            msg.strict)) if isinstance(a, m.Refuse)]
        if refused:
            raise p.ProtocolError(refused[0].code, refused[0].message, request_id=msg.id)
        self._next_key += 1
        self._queued[key] = _Queued(msg, batch, identity, self._key)
        self._requests.queued(self._key, identity)

    def _profile_next(self, msg: p.ProfileNextRequest, _t: dict[str, np.ndarray], _identity: Any) -> None:
        raise p.ProtocolError("bad_request", "profile_next is for a profiling session (`governor profile MODEL "
                              "--external NAME`), not for the daemon: connect to the endpoint that command "
                              "prints", request_id=msg.id)

    def demand(self, budget: p.Budget) -> Demand:
        return to_demand(budget, self.machine.settings.objective)

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
        batch: np.ndarray
        if arr.dtype == np.float32:
            batch = np.array(arr)  # a copy, and nothing to overflow: no errstate (10 us of Python when cold)
        else:
            with np.errstate(over="ignore"):
                batch = np.array(arr, dtype=np.float32)
        if not np.isfinite(batch).all():  # checked after the cast: 1e300 as float64 becomes inf
            raise p.ProtocolError("bad_request", "input holds NaN or infinity, or values beyond float32 (±3.4e38)",
                                  request_id=msg.id)
        return batch

    @functools.cached_property
    def max_batch(self) -> int:
        """The most inputs one ``infer`` may carry: what fits in ``_MAX_BATCH_ACTIVATION_BYTES`` of layer outputs
        (the model is fixed while serving; computed once, it was read on every infer)."""
        per_input = max((level.activation_bytes for level in self.parts.meta.levels), default=0)
        return max(1, _MAX_BATCH_ACTIVATION_BYTES // max(per_input, 1))

    def check_model(self, msg: p.InferRequest | p.AdviseRequest | p.AcquireRequest | p.StreamOpenRequest) -> None:
        if msg.model is not None and msg.model != self.parts.model_name:
            raise p.ProtocolError("bad_request", f"model {msg.model!r} is not loaded; this daemon serves "
                                  f"{self.parts.model_name!r} (leave model unset)", request_id=msg.id)
        if msg.budget.min_accuracy is not None and not self.parts.meta.accuracies_known:
            raise p.ProtocolError("bad_request", f"model {self.parts.model_name!r} has no measured accuracies (a "
                                  "converted model): leave min_accuracy out, or measure them with `governor train "
                                  "--from MODEL --dataset ...` and serve that file", request_id=msg.id)

    # -- carrying out the machine's actions -------------------------------------------------------
    def carry(self, actions: list[m.Action]) -> None:
        for action in actions:
            if isinstance(action, m.Apply):
                self._apply(action)
            elif isinstance(action, m.Run):
                self._run(action)
            elif isinstance(action, m.Grant):
                self.leases.grant(action)
            elif isinstance(action, m.Push):
                self.streams.push(action)
            elif isinstance(action, m.Reply):
                if not self.leases.answer(action):
                    self._reply_infer(action)
            elif isinstance(action, m.Refuse):
                self._refuse(action)
            elif isinstance(action, m.Release):
                self._hand_back(action.domains)
            elif isinstance(action, m.Publish):
                self._publish_action(action)

    def _apply(self, action: m.Apply) -> None:
        writing = self.parts.clock()
        try:
            applied = self.parts.board.apply(action.setpoints)
        except Exception as exc:  # a driver that raises instead of reporting: every domain failed
            log.exception("applying %s failed", dict(action.setpoints.hz))
            applied, errors = {}, {name: str(exc) for name in action.setpoints.hz}
        else:
            errors = dict(getattr(applied, "errors", {}))  # the drivers' Applied names what failed
        done = self.parts.clock()
        self.carry(self.machine.handle(m.Applied(done, action, {n: r.cur_hz for n, r in applied.items()},
                                                  (done - writing) * 1000.0, errors)))

    def _run(self, action: m.Run) -> None:
        queued = self._queued[int(action.key)]  # type: ignore[call-overload]
        try:
            outcome = self.parts.backend.run(queued.batch, action.decision.point)
        except Exception as exc:
            log.exception("inference failed")
            self.carry(self.machine.handle(m.Failed(self.parts.clock(), action.key,
                                                     f"inference failed: {exc}; see the daemon's log")))
            return
        ran = self.parts.clock()
        self._outcomes[action.key] = outcome
        self.served += 1
        self.carry(self.machine.handle(m.Outcome(ran, action.key, outcome.latency_ms, outcome.energy_mj,
                                                  outcome.simulated)))

    def _refuse(self, action: m.Refuse) -> None:
        if self.streams.refuse(action) or self.leases.refuse(action):
            return
        queued = self._queued.pop(int(action.key))  # type: ignore[call-overload]
        if action.code == "internal":
            self._count("infer", "error")
            self._answer(queued, p.ErrorReply(id=queued.request.id, code="internal", message=action.message[:4000]),
                         keep=False)  # an internal failure: a retry may succeed
            return
        self._count("infer", "infeasible" if action.code == "infeasible" else "rejected")
        self._answer(queued, p.ProtocolError(action.code, action.message, request_id=queued.request.id).to_reply())

    def _hand_back(self, domains: Sequence[str]) -> None:
        """Each domain back to its kernel governor, within the limits found at start."""
        for name in domains:
            domain, limits = self.parts.board.domains.get(name), self._release_hz.get(name)
            if domain is None or limits is None:
                continue
            try:
                domain.set_range(*limits)
            except (OSError, ValueError) as exc:  # the next run pins again; say why the clock stayed
                log.warning("cannot hand %s back to its kernel governor: %s", name, exc)

    def _publish_action(self, action: m.Publish) -> None:
        if action.kind == "observation" and action.observation is not None:
            obs = action.observation
            self.last_obs = obs
            self.last_wire = wire_observation(obs)
            wire = self.last_wire
            self.publish("observation", lambda seq: p.TelemetryObservation.from_observation(wire, seq))
            self.parts.metrics.observation(obs)
        elif action.kind == "setpoints":
            self.publish("event", lambda seq: p.TelemetryEvent(
                seq=seq, t=self.parts.clock(), simulated=self.parts.simulated, kind="setpoints", reason=Reason.CLIENT,
                message=action.message))

    def _reply_infer(self, action: m.Reply) -> None:
        queued = self._queued.pop(int(action.key))  # type: ignore[call-overload]
        outcome = self._outcomes.pop(action.key)
        decision, msg = action.decision, queued.request
        total_ms = action.total_ms if action.total_ms is not None else outcome.latency_ms
        if self.parts.server.is_empty():
            # Nothing came in during the run, so whatever comes next arrives after this instant. Looked at
            # before the reply goes out: looked at after it, the next request of a client that waits on
            # each reply was often already there (it answers faster than we publish telemetry), and it
            # was charged the whole run as queueing, so a generous deadline looked infeasible.
            self._polled_at = self.parts.clock()
        known = dict(energy_known=self.parts.table.energy_measured, simulated=self.parts.simulated,
                     accuracy_known=self.parts.meta.accuracies_known)
        point = self.last_point = self._infer_frames.point(decision)
        latency_ms = min(outcome.latency_ms, p.MAX_DEADLINE_MS)
        energy_mj = None if outcome.energy_mj is None else min(outcome.energy_mj, p.MAX_ENERGY_MJ)
        ok = met(msg.budget, total_ms, outcome.energy_mj, decision.accuracy)
        wire_total = min(total_ms, p.MAX_DEADLINE_MS) if p.speaks(msg.v, 1) else None
        frames = self._infer_frames.frames(msg.id, decision, **known, latency_ms=latency_ms, energy_mj=energy_mj,
                                           budget_met=ok, total_ms=wire_total, output=outcome.outputs)

        # The prediction and the measurement as models, only where they are needed (the full encoder, telemetry).
        def estimates() -> tuple[p.Estimate, p.Estimate]:
            predicted = estimate(decision, energy_known=known["energy_known"], accuracy_known=known["accuracy_known"])
            return predicted, p.Estimate(latency_ms=latency_ms, energy_mj=energy_mj, accuracy=predicted.accuracy)

        if frames is None:  # an output the template does not take: the encoder writes it, or says why not
            predicted, measured = estimates()
            frames = p.encode_reply(p.InferReply(
                id=msg.id, point=point, predicted=predicted, measured=measured, budget_met=ok,
                budget_infeasible=decision.infeasible, simulated=self.parts.simulated, total_ms=wire_total),
                {"output": outcome.outputs})
        self.answer_all(queued.key, queued.identity, frames)

        def telemetry(seq: int) -> p.Telemetry:
            predicted, measured = estimates()
            return p.TelemetryInference(seq=seq, t=self.parts.clock(), simulated=self.parts.simulated, id=msg.id,
                                        budget=msg.budget, point=point, predicted=predicted, measured=measured,
                                        budget_met=ok, budget_infeasible=decision.infeasible)

        self.publish("inference", telemetry)
        self.parts.metrics.request("infer", "infeasible" if decision.infeasible else ("met" if ok else "missed"))
        self.parts.metrics.decision(decision.point, decision.latency_ms, outcome.latency_ms,
                                    decision.energy_mj if known["energy_known"] else None, outcome.energy_mj)

    # -- plumbing -------------------------------------------------------------------------------
    def new_key(self) -> int:
        """A fresh machine key for a queued request (our own counter, not the client's id)."""
        self._next_key += 1
        return self._next_key - 1

    @property
    def arrival_t(self) -> float:
        """When the message being handled arrived (daemon clock, s)."""
        return self._arrival_t

    @property
    def request_key(self) -> RequestKey | None:
        """How resends of the message being handled are recognised (None: not remembered)."""
        return self._key

    @property
    def requests(self) -> RequestMemory:
        return self._requests

    @property
    def ended(self) -> Mapping[str, tuple[str, float]]:
        """Lease and stream ids that ended: id -> (how, ms)."""
        return self._ended

    def send(self, identity: Any, reply: p.Reply, tensors: dict[str, np.ndarray] | None = None,
              key: RequestKey | None = None) -> None:
        frames = p.encode_reply(reply, tensors)
        self.parts.server.send(identity, frames)
        self._requests.remember(key, self.parts.clock(), frames)

    def _answer(self, queued: _Queued, reply: p.Reply, tensors: dict[str, np.ndarray] | None = None,
                keep: bool = True) -> None:
        """A queued request's one reply, to every socket that asked for it (resends joined it); kept for
        later resends unless ``keep`` is False (an internal failure: a retry may succeed)."""
        self.answer_all(queued.key, queued.identity, p.encode_reply(reply, tensors), keep)

    def answer_all(self, key: RequestKey | None, identity: Any, frames: Sequence[Any], keep: bool = True) -> None:
        """A queued request's one reply, to every socket that asked for it (resends joined it), kept for
        later resends unless ``keep`` is False."""
        for asker in self._requests.done(key, identity):
            self.parts.server.send(asker, frames)
        if keep:
            self._requests.remember(key, self.parts.clock(), frames)

    def _count(self, kind: str, outcome: str) -> None:
        self.parts.metrics.request(kind, outcome)

    def publish(self, topic: str, build: Callable[[int], p.Telemetry]) -> None:
        """Publish ``build(seq)`` on ``topic`` if anyone subscribes to it; ``seq`` counts what is published."""
        if self.parts.telemetry_wanted(topic):
            self._seq += 1
            self.parts.telemetry(p.encode_telemetry(build(self._seq - 1)))


_HANDLERS: dict[str, Callable[..., None]] = {
    "hello": Daemon._hello,
    "status": Daemon._status,
    "profiles": Daemon._profiles,
    "reload": Daemon._reload,
    "advise": Daemon._advise,
    "infer": Daemon._infer,
    "acquire": lambda d, msg, _t, identity: d.leases.acquire(msg, identity),
    "release": lambda d, msg, _t, identity: d.leases.release(msg, identity),
    "profile_next": Daemon._profile_next,
    "stream_open": lambda d, msg, _t, identity: d.streams.open(msg, identity),
    "stream_report": lambda d, msg, _t, identity: d.streams.report(msg, identity),
    "stream_close": lambda d, msg, _t, identity: d.streams.close(msg, identity),
}
_REMEMBERED = frozenset({"infer", "acquire", "release", "stream_open", "stream_close"})  # resends answered once


def _limits_in_force(board: BoardIO) -> dict[str, tuple[int, int]]:
    """Each domain's (min, max) limits in Hz before we write anything: what ``release`` hands back."""
    limits: dict[str, tuple[int, int]] = {}
    for name, domain in board.domains.items():
        try:
            reading = domain.read()
        except (OSError, ValueError):
            continue
        limits[name] = (reading.min_hz, reading.max_hz)
    return limits
