"""A simulated executor: "run" an inference on a simulated board and report how long it took.

Theory of operation
-------------------
The setpoints of the operating point are expected to be applied already, through the drivers;
the executor only says where the work runs (unit, threads) and how much of the network (k). It
submits a :class:`~governor.sim.engine.Job` to the board, whose engine loads the unit (power and
temperature rise while it runs), progresses it at the clocks and co-runner shares in force, and
stamps its finish time. With a virtual clock the executor advances the board until the job is
done; with a real clock it waits for the board (its own syncs, or the board's background thread).
Every result says ``simulated=True``; the energy is the board's simulated input-rail energy
over the run (the simulator's truth, not a sensor reading).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from governor.core.physics import Workload
from governor.core.types import OperatingPoint, Sample
from governor.sim.board import SimBoard
from governor.sim.clock import VirtualClock
from governor.sim.values import Job

__all__ = ["SimExecutor", "SimRun"]

_GIVE_UP_S = 3600.0


@dataclass(frozen=True)
class SimRun:
    """One simulated inference: latency in ms, board energy in mJ, start in board seconds."""

    unit: str
    threads: int
    k: int
    latency_ms: float
    energy_mj: float
    start_s: float
    simulated: bool = True


class SimExecutor:
    """Runs workloads on a :class:`SimBoard` (see the module doc). ``simulated`` is always True."""

    simulated = True

    def __init__(self, sim: SimBoard, workload: Workload | None = None, *,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.002) -> None:
        self.sim, self.workload, self.sleep, self.poll_s = sim, workload, sleep, poll_s

    def run(self, unit: str, *, k: int, threads: int = 1, workload: Workload | None = None) -> SimRun:
        """Run one inference of ``workload`` (default: the executor's) at ``k`` groups on ``unit``."""
        work = workload or self.workload
        if work is None:
            raise ValueError("no workload: pass workload= or give the executor one")
        self._check(unit, k, threads, work)
        with self.sim.lock:
            if not isinstance(self.sim.clock, VirtualClock):
                # The engine's time lags the wall clock by up to a sync period; a job starts now.
                self.sim.sync()
            job = Job(unit=unit, threads=threads, workload=work, k=k, start_s=self.sim.engine.t)
            self.sim.submit(job)
        if isinstance(self.sim.clock, VirtualClock):
            self._advance_until(job)
        else:
            self._wait_for(job)
        assert job.finish_s is not None
        return SimRun(unit, threads, k, (job.finish_s - job.start_s) * 1000.0, job.energy_mj, job.start_s)

    def run_point(self, point: OperatingPoint, workload: Workload | None = None) -> Sample:
        """Run at an :class:`OperatingPoint` (its setpoints already applied) and return the feedback."""
        result = self.run(point.unit, k=point.groups, threads=point.threads, workload=workload)
        return Sample(point=point, latency_ms=result.latency_ms, energy_mj=result.energy_mj, simulated=True)

    def _check(self, unit: str, k: int, threads: int, work: Workload) -> None:
        names = [u.name for u in self.sim.spec.units]
        if unit not in names:
            raise ValueError(f"board {self.sim.spec.name} has no compute unit {unit!r}; it has {names}")
        if k not in work.groups:
            raise ValueError(f"workload {work.name!r} has no k={k}; it has k in {list(work.groups)}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        spec = self.sim.spec.unit(unit)
        if spec.kind == "cpu" and spec.cpus and not set(spec.cpus) & self.sim.engine.online:
            raise ValueError(f"every CPU of unit {unit!r} ({list(spec.cpus)}) is offline; bring one online first")

    def _advance_until(self, job: Job) -> None:
        self.sim.run_until_done(job, _GIVE_UP_S)
        if not job.done:
            raise RuntimeError(f"job on {job.unit!r} did not finish within {_GIVE_UP_S} simulated seconds")

    def _wait_for(self, job: Job) -> None:
        deadline = time.monotonic() + _GIVE_UP_S
        while not job.done:
            if time.monotonic() > deadline:
                raise RuntimeError(f"job on {job.unit!r} did not finish within {_GIVE_UP_S} s")
            if not self.sim.running:
                self.sim.sync()
            if not job.done:
                self.sleep(self.poll_s)
