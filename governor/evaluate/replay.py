"""Replaying a trace through the real daemon loop on a simulated board, in virtual time.

Theory of operation
-------------------
Each policy gets a fresh ``sim:<board>`` (same seed, same co-runner scenario) with a virtual clock,
the real drivers on it, and the very loop ``governor serve`` runs: a
:class:`~governor.daemon.service.Daemon` driving a
:class:`~governor.core.decision.machine.GovernorMachine` built from the same config defaults
(:func:`governor.daemon.config.machine_settings`), whose clock *is* the board's clock. The replay
adds no loop of its own: ``Daemon.step`` is called until the trace is over, and the only thing that
differs from a served daemon is its socket, :class:`TraceSocket`, which stands for the world:

* a poll that would wait advances the simulated board (virtual time) to the next arrival, or to the
  end of the poll's timeout (the daemon's next tick or the machine's ``wake_at``), whichever is first;
* while virtual time passes between runs, the policy's own ``act`` runs at its period (the
  kernel-governor rules write clocks through the drivers); a run is atomic in the simulator, so a
  governor acts between runs, never in the middle of one;
* requests that arrive during a run wait on the socket until the run ends, as on a real daemon, and
  the daemon stamps them as it stamps real ones (the time it last saw its socket empty).

Deadlines are judged from the *true* arrival time. Energy is the board's simulated input-rail
energy over the whole replay (idle time included: what a battery pays), from the simulator's
noiseless counters. Everything recorded is simulated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governor.core import protocol as p
from governor.core.board import BoardSpec
from governor.core.modelmeta import ModelMeta
from governor.core.physics import Workload
from governor.core.types import Observation, Setpoints
from governor.daemon.backend import SimBackend
from governor.daemon.config import Config, machine_settings
from governor.daemon.service import BoardIO, assemble
from governor.daemon.target import open_target
from governor.evaluate.policies import Policy, PolicyContext
from governor.evaluate.traces import Arrival
from governor.sim import Scenario, SimExecutor

__all__ = ["PolicyRun", "ReplaySetup", "RequestRecord", "TickRecord", "idle_floor_mw", "replay", "window_util"]

_EPS_S = 1e-9


@dataclass(frozen=True)
class RequestRecord:
    """One served request (times in board seconds, latency ms, energy mJ); ``simulated`` always."""

    index: int
    arrival_s: float
    deadline_ms: float
    min_accuracy: float | None
    start_s: float
    finish_s: float
    unit: str
    threads: int
    k: int
    setpoints_hz: Mapping[str, int]
    run_ms: float
    energy_mj: float | None
    accuracy: float | None
    infeasible: bool
    simulated: bool = True

    @property
    def total_ms(self) -> float:
        return (self.finish_s - self.arrival_s) * 1000.0

    @property
    def deadline_met(self) -> bool:
        return self.total_ms <= self.deadline_ms + 1e-6

    @property
    def floor_met(self) -> bool:
        return self.min_accuracy is None or (self.accuracy is not None and self.accuracy >= self.min_accuracy - 1e-9)


@dataclass(frozen=True)
class TickRecord:
    t_s: float
    clocks_hz: Mapping[str, int]
    power_mw: float | None


@dataclass
class PolicyRun:
    policy: str
    records: list[RequestRecord] = field(default_factory=list)
    ticks: list[TickRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    board_energy_mj: float = 0.0
    duration_s: float = 0.0
    simulated: bool = True


@dataclass(frozen=True)
class ReplaySetup:
    """What every replay shares: board name, model, seed and the daemon's tick rate (Hz)."""

    board: str
    model_name: str
    meta: ModelMeta
    workload: Workload
    seed: int = 0
    tick_hz: float | None = None  # the daemon's tick rate, Hz; None = the config's (daemon.tick_hz)


def replay(policy: Policy, ctx: PolicyContext, setup: ReplaySetup, config: Config | None = None) -> PolicyRun:
    """Run ``ctx.trace`` under ``policy`` on a fresh simulated board; the board is closed afterwards.
    ``config``: the daemon's configuration (default: the defaults ``governor serve`` has)."""
    target = open_target(setup.board, clock="virtual", seed=setup.seed)
    try:
        assert target.sim is not None
        target.sim.set_scenario(ctx.trace.scenario)
        return _Replay(policy, ctx, setup, target, config or Config()).run()
    finally:
        target.close()


_CLIENT = b"trace"


class TraceSocket:
    """The daemon's socket during a replay: the trace's arrivals, delivered in virtual time (module doc)."""

    def __init__(self, replay: _Replay, arrivals: Sequence[Arrival], end_s: float) -> None:
        self.replay, self.sim, self.clock = replay, replay.sim, replay.sim.clock
        self.arrivals = deque(arrivals)
        self.end_s = end_s
        self.sent: dict[str, Arrival] = {}

    def _due(self, now: float) -> bool:
        return bool(self.arrivals) and self.arrivals[0].t_s <= now + _EPS_S

    def is_empty(self) -> bool:
        return not self._due(self.clock())

    def recv(self, timeout_ms: int | None = None) -> tuple[bytes, list[Any]] | None:
        now = self.clock()
        self.replay.act_if_due(now)
        if not self._due(now):
            if not timeout_ms:
                return None
            until = now + timeout_ms / 1000.0
            while True:  # idle: the daemon sits in its poll; the board runs on, the policy acts at its period
                target = min(until, self.replay.next_act, self.arrivals[0].t_s if self.arrivals else self.end_s)
                self.sim.advance(max(target - self.clock(), 0.0))
                now = self.clock()
                self.replay.act_if_due(now)
                if self._due(now) or now >= until - _EPS_S or (not self.arrivals and now >= self.end_s - _EPS_S):
                    break
            if not self._due(now):
                return None
        arrival = self.arrivals.popleft()
        key = f"r{arrival.index}"
        self.sent[key] = arrival
        budget = p.Budget(deadline_ms=arrival.deadline_ms, min_accuracy=arrival.min_accuracy)
        frames = p.encode_request(p.InferRequest(id=key, budget=budget), {"input": self.replay.batch})
        return _CLIENT, [memoryview(bytes(f)) for f in frames]

    def send(self, identity: Any, frames: Sequence[Any]) -> None:
        reply, _ = p.decode_reply([memoryview(bytes(f)) for f in frames])
        arrival = self.sent.pop(reply.id, None) if reply.id is not None else None
        if arrival is None:
            return
        if isinstance(reply, p.InferReply):
            finish = self.clock()
            self.replay.out.records.append(_record(arrival, reply, finish - reply.measured.latency_ms / 1000.0, finish))
        else:
            self.replay.out.errors.append(f"request {arrival.index}: {getattr(reply, 'message', reply)}")


class _RecordingBoard:
    """The drivers' board, with every sample the daemon takes recorded as a tick."""

    def __init__(self, board: Any, out: PolicyRun) -> None:
        self.board, self.out = board, out
        self.domains = board.domains

    def sample(self) -> Observation:
        obs: Observation = self.board.sample()
        self.out.ticks.append(TickRecord(obs.t, {n: r.cur_hz for n, r in obs.domains.items()}, obs.total_power_mw))
        return obs

    def apply(self, setpoints: Setpoints) -> Any:
        return self.board.apply(setpoints)


class _Replay:
    def __init__(self, policy: Policy, ctx: PolicyContext, setup: ReplaySetup, target: Any, config: Config) -> None:
        self.policy, self.ctx, self.setup, self.target, self.sim = policy, ctx, setup, target, target.sim
        self.clock = self.sim.clock
        self.out = PolicyRun(policy.name)
        self.batch = np.zeros((1, *setup.meta.input_shape), dtype=np.float32)
        self.period = policy.period_s or float("inf")
        self.next_act = self.last_act = self.clock()
        backend = SimBackend(SimExecutor(self.sim, setup.workload), None, len(setup.meta.classes))
        table = policy.table(ctx)
        table_hz = {name: tuple(hz) for name, hz in ctx.domain_hz.items()}
        board: BoardIO = _RecordingBoard(target.board, self.out)
        self.socket = TraceSocket(self, ctx.trace.arrivals, ctx.trace.end_s)
        self.daemon = assemble(
            target.spec, board, backend, setup.meta, setup.model_name, table, self.socket,
            machine_settings(config, idle_clocks=policy.idle_clocks), table_hz=table_hz,
            cpu_count=target.spec.cpu_count or 1, clock=self.clock, simulated=True,
            tick_hz=config.daemon.tick_hz if setup.tick_hz is None else setup.tick_hz)
        policy.install(ctx, self.daemon.machine, self.sim)

    def run(self) -> PolicyRun:
        self.policy.start(self.ctx, self.target.board)
        energy_at_start = _board_energy_mj(self.sim)
        end_s = self.ctx.trace.end_s
        while self.socket.arrivals or self.socket.sent or self.clock() < end_s - _EPS_S:
            self.daemon.step()
        self.out.board_energy_mj = _board_energy_mj(self.sim) - energy_at_start
        self.out.duration_s = self.clock()
        return self.out

    def act_if_due(self, now: float) -> None:
        """The policy's own rule (a kernel governor's), at its period of virtual time."""
        if now < self.next_act - _EPS_S:
            return
        board = self.target.board
        clocks = {name: d.read().cur_hz for name, d in board.domains.items()}
        util = window_util(self.ctx.spec, self.out.records, self.last_act, now, clocks, self.ctx.trace.scenario)
        self.last_act = now
        self.next_act = now + self.period
        self.policy.act(self.ctx, board, util)


def _record(arrival: Arrival, reply: p.InferReply, start_s: float, finish_s: float) -> RequestRecord:
    point = reply.point
    return RequestRecord(
        arrival.index, arrival.t_s, arrival.deadline_ms, arrival.min_accuracy, start_s, finish_s, point.mapping.unit,
        point.mapping.threads, point.k, dict(point.setpoints_hz), reply.measured.latency_ms, reply.measured.energy_mj,
        reply.measured.accuracy, reply.budget_infeasible, reply.simulated)


def idle_floor_mw(board: str, seed: int = 0, settle_s: float = 1.0, window_s: float = 2.0) -> float:
    """The board's idle floor, mW: input-rail power of a fresh simulated board with nothing running and
    every clock left to its kernel governor (noiseless counters), averaged over ``window_s``."""
    target = open_target(board, clock="virtual", seed=seed)
    try:
        assert target.sim is not None
        target.sim.advance(settle_s)
        start = _board_energy_mj(target.sim)
        target.sim.advance(window_s)
        return (_board_energy_mj(target.sim) - start) / window_s
    finally:
        target.close()


def _board_energy_mj(sim: Any) -> float:
    """The simulator's noiseless input-rail energy counter (the whole chip's where there is no input rail)."""
    rail = sim.physics.input_rail
    return float(sim.engine.energy_mj.get(rail.name if rail else "_chip", 0.0))


def _own_busy_s(records: list[RequestRecord], unit: str, cores: int, t0: float, t1: float) -> float:
    """Core-weighted seconds our runs kept ``unit`` busy within [t0, t1] (records are in finish order)."""
    busy = 0.0
    for r in reversed(records):
        if r.finish_s < t0:
            break
        if r.unit == unit:
            busy += max(0.0, min(r.finish_s, t1) - max(r.start_s, t0)) * min(1.0, r.threads / cores)
    return busy


def window_util(spec: BoardSpec, records: list[RequestRecord], t0: float, t1: float, clocks_hz: Mapping[str, int],
                scenario: Scenario) -> dict[str, float]:
    """Busy fraction per DVFS domain over [t0, t1] (s), as a kernel governor sees it: our runs there,
    plus what the co-runners in force keep busy at the current clock (the simulator's contention rule)."""
    span = max(t1 - t0, 1e-6)
    util: dict[str, float] = {}
    active = scenario.active(t1 - _EPS_S)
    for unit in spec.units:
        cores = max(len(unit.cpus), 1) if unit.kind == "cpu" else 1
        own = _own_busy_s(records, unit.name, cores, t0, t1) / span
        cur = clocks_hz.get(unit.domain, 0)
        top = max(spec.domain(unit.domain).table_hz) if unit.domain and spec.domain(unit.domain).table else 0
        ratio = top / cur if cur > 0 and top else 1.0
        taken = min(0.95, sum(min(1.0, c.share * ratio) if c.fixed_work else c.share for c in active
                              if c.unit == unit.name))
        busy = min(1.0, own + taken * (1.0 - min(own, 1.0)))
        if unit.domain:
            util[unit.domain] = max(util.get(unit.domain, 0.0), busy)
    return util
