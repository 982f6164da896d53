"""Power grids of the simulated TX2 with the GPU busy (SIMULATED): what the profiler's power model is
developed against where no real GPU-busy grid is held (issue 19.1).

Theory of operation
-------------------
The real grids in ``tests/fixtures/tx2`` ran CPU benchmarks: the GPU idled, so board power there is
nearly a sum of one-clock terms. A busy GPU couples its clock with the memory clock: a kernel's time
is a soft roofline of compute (``1 / f_gpu``) and memory (``1 / f_emc``), the GPU switches less while
it stalls on DRAM, and DRAM power follows the traffic the kernel pulls, which depends on both clocks.
:func:`gpu_busy_grid` measures that coupling on ``sim:jetson-tx2``: for every (CPU, GPU, EMC) setting
of a real grid it sets the clocks through the real drivers, runs a GPU kernel back to back for
``run_s`` with one A57 core busy launching it (as a CUDA host thread is), and records the board's
mean input-rail power over the kernel. :data:`KERNELS` are the shapes swept; the simulated TX2 GPU's
ridge is about 2 MACs per byte at the top clocks and 100 at the lowest EMC clock: compute-bound
(``gpu-compute``, 50 MACs per byte: bound by the GPU clock except at the lowest EMC clocks),
memory-bound (``gpu-memory``, 0.5 MACs per byte: bound by the EMC clock except at low GPU clocks) and
in between (``gpu-mixed``, 4 MACs per byte, the corner moving across the grid).

Every row is the simulator's, and the files say so (``simulated`` column, ``-sim`` in their names).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from governor.core.physics import LayerWork, Workload
from governor.core.types import Setpoints
from governor.sim.scenario import CoRunner, Phase, Scenario

__all__ = ["KERNELS", "GridRow", "gpu_busy_grid", "read_settings", "write_grid"]

_MACS = 2.0e9  # per kernel launch: long enough that its mean power is its steady draw, not the launch's


@dataclass(frozen=True)
class GridRow:
    """One setting (CPU kHz, GPU Hz, EMC Hz) and the board's mean input power over the kernel (mW)."""

    cpu_khz: int
    gpu_hz: int
    emc_hz: int
    power_mw: float
    latency_ms: float


def _kernel(name: str, macs_per_byte: float) -> Workload:
    return Workload(name, {1: (LayerWork(macs=_MACS, bytes=_MACS / macs_per_byte),)}, overhead_ms=0.0)


KERNELS: dict[str, Workload] = {
    "gpu-compute": _kernel("gpu-compute", 50.0),
    "gpu-mixed": _kernel("gpu-mixed", 4.0),
    "gpu-memory": _kernel("gpu-memory", 0.5),
}


def read_settings(path: Path) -> list[tuple[int, int, int]]:
    """The (cpu_khz, gpu_hz, emc_hz) settings of a grid file, in its order."""
    with path.open() as f:
        return [(int(r["cpu_khz"]), int(r["gpu_hz"]), int(r["emc_hz"])) for r in csv.DictReader(f)]


def gpu_busy_grid(kernel: str, settings: Iterable[tuple[int, int, int]], *, seed: int = 0) -> list[GridRow]:
    """Board power of ``sim:jetson-tx2`` at each setting while ``kernel`` (a :data:`KERNELS` name) keeps the
    GPU busy (SIMULATED). Clocks go through the real drivers, as ``governor profile`` sets them."""
    from governor.sim.board import open_sim_board
    from governor.sim.executor import SimExecutor

    work = KERNELS[kernel]
    sim = open_sim_board("sim:jetson-tx2", seed=seed)
    # the CUDA host thread: one A57 core busy launching and waiting (its share does not follow the clock)
    sim.set_scenario(Scenario((Phase(0.0, 1e12, (CoRunner("a57", 0.25, stall_ratio=0.05, fixed_work=False),)),)))
    drivers = sim.open_drivers()
    executor = SimExecutor(sim, work)
    rows = []
    try:
        for cpu_khz, gpu_hz, emc_hz in settings:
            drivers.apply(Setpoints({"cpu-a57": cpu_khz * 1000, "gpu": gpu_hz, "emc": emc_hz}))
            run = executor.run("gpu", k=1)
            rows.append(GridRow(cpu_khz, gpu_hz, emc_hz, run.energy_mj / run.latency_ms * 1000.0, run.latency_ms))
    finally:
        drivers.close()
        sim.close()
    return rows


def write_grid(path: Path, rows: Sequence[GridRow]) -> Path:
    """A grid file in the real grids' columns (``vdd_in_mw`` the power), plus latency and ``simulated``."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cpu_khz", "gpu_hz", "emc_hz", "vdd_in_mw", "latency_ms", "simulated"])
        w.writerows([r.cpu_khz, r.gpu_hz, r.emc_hz, f"{r.power_mw:.1f}", f"{r.latency_ms:.4f}", 1] for r in rows)
    return path
