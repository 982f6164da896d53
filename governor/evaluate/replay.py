"""Replaying a trace through the real daemon on a simulated board, in virtual time.

Theory of operation
-------------------
Each policy gets a fresh ``sim:<board>`` (same seed, same co-runner scenario) with a virtual clock,
the real drivers on it, a :class:`~governor.daemon.service.Daemon` whose clock *is* the board's
clock, and the in-process transport. The loop does what :meth:`Daemon.step` does, in the same
order, but moves virtual time itself instead of waiting on a socket:

1. at a tick instant: ``daemon.tick(now)`` (sample through the drivers, scheduler observes);
   at the policy's own period, its ``act`` (kernel-governor rules write clocks through the drivers);
2. idle (nothing queued, nothing arrived): advance the board to the next arrival, tick or act;
3. one arrived request goes from a client end through the transport into ``daemon.receive``;
4. if anything is queued, ``daemon.run_next()``: decide, apply, run (the simulated executor
   advances the board exactly to the finish), feed back, reply.

Requests that arrive during a run wait in the "socket" until the run ends, as on a real daemon, and
are all taken before the next run, stamped with the time the daemon last saw its socket empty.
Deadlines are judged from the *true* arrival time. Energy is the board's simulated input-rail
energy over the whole replay (idle time included: what a battery pays), from the simulator's
noiseless counters. Everything recorded is simulated.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governor.core import protocol as p
from governor.core.board import BoardSpec
from governor.core.modelmeta import ModelMeta
from governor.core.physics import Workload
from governor.daemon.backend import SimBackend
from governor.daemon.service import Daemon, DaemonParts
from governor.daemon.target import open_target
from governor.evaluate.policies import Policy, PolicyContext
from governor.evaluate.traces import Arrival
from governor.sim import Scenario, SimExecutor
from governor.transport.inproc import InprocPair

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
    tick_hz: float = 10.0


def replay(policy: Policy, ctx: PolicyContext, setup: ReplaySetup) -> PolicyRun:
    """Run ``ctx.trace`` under ``policy`` on a fresh simulated board; the board is closed afterwards."""
    target = open_target(setup.board, clock="virtual", seed=setup.seed)
    try:
        assert target.sim is not None
        target.sim.set_scenario(ctx.trace.scenario)
        return _Replay(policy, ctx, setup, target).run()
    finally:
        target.close()


class _Replay:
    def __init__(self, policy: Policy, ctx: PolicyContext, setup: ReplaySetup, target: Any) -> None:
        self.policy, self.ctx, self.setup, self.target, self.sim = policy, ctx, setup, target, target.sim
        self.clock = self.sim.clock
        backend = SimBackend(SimExecutor(self.sim, setup.workload), None, len(setup.meta.classes))
        self.pair = InprocPair()
        self.client = self.pair.connect()
        self.daemon = Daemon(DaemonParts(
            spec=target.spec, board=target.board, backend=backend, meta=setup.meta, model_name=setup.model_name,
            table=policy.table(ctx), server=self.pair.server, clock=self.clock, tick_hz=setup.tick_hz,
            simulated=True, cpu_count=target.spec.cpu_count or 1, idle_clocks=policy.idle_clocks,
            table_hz={name: tuple(hz) for name, hz in ctx.domain_hz.items()}))
        policy.install(ctx, self.daemon, self.sim)
        self.out = PolicyRun(policy.name)
        self.pending: dict[str, Arrival] = {}
        self.batch = np.zeros((1, *setup.meta.input_shape), dtype=np.float32)
        self.last_act = self.clock()

    def run(self) -> PolicyRun:
        self.policy.start(self.ctx, self.target.board)
        energy_at_start = _board_energy_mj(self.sim)
        arrivals = deque(self.ctx.trace.arrivals)
        next_tick = next_act = polled_at = self.clock()
        period = self.policy.period_s or float("inf")
        end_s = self.ctx.trace.end_s
        while arrivals or self.daemon.scheduler.pending() or self.clock() < end_s - _EPS_S:
            now = self.clock()
            if now >= next_tick - _EPS_S:
                self._tick(now)
                next_tick = now + 1.0 / self.setup.tick_hz
            if now >= next_act - _EPS_S:
                self._act(now)
                next_act = now + period
            arrived = bool(arrivals) and arrivals[0].t_s <= now + _EPS_S
            if not arrived:
                self.daemon.idle_if_due(now)  # like Daemon.step: the idle policy once its grace has passed
            if not arrived and not self.daemon.scheduler.pending():
                idle_at = self.daemon.idle_at if self.daemon.idle_at is not None else float("inf")
                wake = min(next_tick, next_act, idle_at, arrivals[0].t_s if arrivals else end_s)
                self.sim.advance(max(wake - now, 0.0))
                polled_at = self.clock()  # idle: the daemon sits in its poll, so an arrival wakes it at once
                continue
            # Like Daemon._drain: everything that came in during the run is taken before the next run,
            # stamped with the time the daemon last saw its socket empty (what a real daemon knows).
            while arrivals and arrivals[0].t_s <= now + _EPS_S:
                self._send(arrivals.popleft(), polled_at)
            polled_at = self.clock()
            if self.daemon.scheduler.pending():
                self._run_next()
        self.out.board_energy_mj = _board_energy_mj(self.sim) - energy_at_start
        self.out.duration_s = self.clock()
        return self.out

    def _tick(self, now: float) -> None:
        self.daemon.tick(now)
        obs = self.daemon.last_obs
        assert obs is not None
        self.out.ticks.append(TickRecord(now, {n: r.cur_hz for n, r in obs.domains.items()}, obs.total_power_mw))

    def _act(self, now: float) -> None:
        board = self.target.board
        clocks = {name: d.read().cur_hz for name, d in board.domains.items()}
        util = window_util(self.ctx.spec, self.out.records, self.last_act, now, clocks, self.ctx.trace.scenario)
        self.last_act = now
        self.policy.act(self.ctx, board, util)

    def _send(self, arrival: Arrival, polled_at: float) -> None:
        key = f"r{arrival.index}"
        budget = p.Budget(deadline_ms=arrival.deadline_ms, min_accuracy=arrival.min_accuracy)
        self.client.send(p.encode_request(p.InferRequest(id=key, budget=budget), {"input": self.batch}))
        got = self.pair.server.recv(0)
        assert got is not None
        self.pending[key] = arrival
        self.daemon.receive(*got, arrival_t=min(polled_at, arrival.t_s))
        self._collect(self.clock())  # a rejected request is answered at once

    def _run_next(self) -> None:
        start = self.clock()
        self.daemon.run_next()
        self._collect(start)

    def _collect(self, start_s: float) -> None:
        while (frames := self.client.recv(0)) is not None:
            reply, _ = p.decode_reply(frames)
            arrival = self.pending.pop(reply.id, None)
            if arrival is None:
                continue
            if isinstance(reply, p.InferReply):
                self.out.records.append(_record(arrival, reply, start_s, self.clock()))
            else:
                self.out.errors.append(f"request {arrival.index}: {getattr(reply, 'message', reply)}")


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
