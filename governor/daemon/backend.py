"""Where an inference really runs: the host's CPU through torch, or a simulated board.

Both backends take an operating point whose setpoints the daemon has already applied through the
drivers and return what happened. The host backend measures wall latency around the forward pass
and reads energy from a RAPL counter when one is readable (``None`` otherwise: nothing is made up).
The simulated backend asks the simulator how long the work took at the clocks in force and how
much energy the board drew (``simulated=True``), and still runs the real network on the host CPU
so clients get real outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from governor.core.board import BoardSpec
from governor.core.types import OperatingPoint

if TYPE_CHECKING:  # the types only: a backend is handed its executors, it never builds them
    from governor.runtime.executor import Executor
    from governor.sim import SimExecutor

__all__ = ["Backend", "HostBackend", "RunOutcome", "SimBackend", "unit_cpus"]


@dataclass(frozen=True)
class RunOutcome:
    outputs: np.ndarray
    latency_ms: float
    energy_mj: float | None
    simulated: bool


def unit_cpus(spec: BoardSpec, unit: str, allowed: frozenset[int] | None = None) -> tuple[int, ...] | None:
    """CPUs of a CPU unit for affinity, among those this process may use; None = all allowed.

    A unit none of whose CPUs is allowed (a fake tree of another machine, a cgroup) runs unpinned."""
    cpus = spec.unit(unit).cpus if spec.unit(unit).kind == "cpu" else ()
    usable = tuple(c for c in cpus if allowed is None or c in allowed)
    return usable or None


class Backend:
    simulated: bool = False
    unit_kinds: frozenset[str] = frozenset({"cpu"})  # kinds of compute unit this backend can really run on
    runs_models: bool = True  # False: the application runs them (leases); infer is refused

    def run(self, batch: np.ndarray, point: OperatingPoint) -> RunOutcome:  # pragma: no cover - interface
        raise NotImplementedError

    def power_mw(self) -> float | None:
        """The board's power now in the terms ``RunOutcome.energy_mj`` is measured in, mW; None when runs
        carry no energy of their own (then energy and the idle floor both come from the power sensors).

        The idle floor the scheduler subtracts must be in the same terms as the run energy it is
        subtracted from: a floor from SoC rails taken off whole-board run energy leaves the rest of the
        board's idle power in the objective, which then races to idle."""
        return None

    def close(self) -> None:
        return None


class ExternalBackend(Backend):
    """No engine of our own (``[daemon] engine = "external"``): the application runs the model through
    leases. Nothing here imports torch; ``run`` is never reached, because ``infer`` is refused first."""

    runs_models = False

    def __init__(self, spec: BoardSpec) -> None:
        self.unit_kinds = frozenset(u.kind for u in spec.units)  # the application's engine may use any unit

    def run(self, batch: np.ndarray, point: OperatingPoint) -> RunOutcome:
        raise RuntimeError("this daemon runs no model (engine = external)")


class HostBackend(Backend):
    """Real inference with the runtime executor(s); ``energy_counter`` returns cumulative mJ or None.

    ``gpu_executor`` (a CUDA executor) serves GPU units; without one, GPU units are not offered."""

    def __init__(self, executor: Executor, spec: BoardSpec, energy_counter: Callable[[], float | None] | None = None,
                 gpu_executor: Executor | None = None):
        import os

        self.executor, self.spec, self.gpu_executor = executor, spec, gpu_executor
        self.energy_counter = energy_counter or (lambda: None)
        self.allowed = frozenset(os.sched_getaffinity(0))
        self._power_from: tuple[float, float] | None = None  # (monotonic s, counter mJ) at the last power_mw
        self.unit_kinds = frozenset({"cpu", "gpu"} if gpu_executor is not None else {"cpu"})

    def run(self, batch: np.ndarray, point: OperatingPoint) -> RunOutcome:
        on_gpu = self.spec.unit(point.unit).kind == "gpu"
        if on_gpu and self.gpu_executor is None:
            raise ValueError(f"unit {point.unit!r} is a GPU but torch sees no CUDA device here")
        executor = self.gpu_executor if on_gpu and self.gpu_executor is not None else self.executor
        cpus = None if on_gpu else unit_cpus(self.spec, point.unit, self.allowed)
        before = self.energy_counter()
        result = executor.run(batch, point.groups, threads=point.threads, cpus=cpus)
        after = self.energy_counter()
        energy = after - before if before is not None and after is not None and after >= before else None
        return RunOutcome(result.outputs, result.latency_ms, energy, False)

    def power_mw(self) -> float | None:
        """Mean power since the previous call, from the energy counter (mW); None on the first call,
        without a counter, or when it wrapped."""
        now, energy = time.monotonic(), self.energy_counter()
        last, self._power_from = self._power_from, (None if energy is None else (now, energy))
        if energy is None or last is None or now <= last[0] or energy < last[1]:
            return None
        return (energy - last[1]) / (now - last[0])

    def close(self) -> None:
        self.executor.close()
        if self.gpu_executor is not None:
            self.gpu_executor.close()


class SimBackend(Backend):
    """Simulated latency and energy on a sim board; outputs from the real network when available."""

    simulated = True
    unit_kinds = frozenset({"cpu", "gpu", "dla"})

    def __init__(self, sim_executor: SimExecutor, outputs_from: Executor | None, classes: int):
        self.sim_executor, self.outputs_from, self.classes = sim_executor, outputs_from, classes

    def run(self, batch: np.ndarray, point: OperatingPoint) -> RunOutcome:
        run = self.sim_executor.run(point.unit, k=point.groups, threads=point.threads)
        if self.outputs_from is not None:
            outputs = self.outputs_from.run(batch, point.groups).outputs
        else:
            outputs = np.zeros((batch.shape[0], self.classes), dtype=np.float32)
        return RunOutcome(outputs, run.latency_ms, run.energy_mj, True)

    def power_mw(self) -> float | None:
        """The simulated whole-board power now (mW): the same meter run energies are integrated from."""
        return float(self.sim_executor.sim.truth().total_mw)

    def close(self) -> None:
        if self.outputs_from is not None:
            self.outputs_from.close()
