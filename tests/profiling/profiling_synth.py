"""Synthetic boards for the profiling tests: known functions, measured by an in-memory source."""

from __future__ import annotations

import itertools

import numpy as np

from governor.core.perf.space import Measurement, ProfilePoint, Space

GPU_HZ = (114.75e6, 318.75e6, 522.75e6, 726.75e6, 930.75e6, 1300.5e6)
EMC_HZ = (40.8e6, 204e6, 665.6e6, 1062.4e6, 1600e6, 1866e6)
CPU_HZ = (345.6e6, 960e6, 2035.2e6)


def roofline_ms(grid: np.ndarray, step_width: float = 0.0) -> np.ndarray:
    """GPU network: launch overhead on the CPU clock + soft roofline (p = 3) of compute and DRAM time.

    Compute work grows with k in tiles of ``step_width`` groups (0 = linearly), DRAM traffic linearly.
    """
    cpu, gpu, emc, k = grid.T
    work = np.ceil(k / step_width) * step_width if step_width else k
    compute = 4.0 * work * 1e9 / gpu
    memory = 1.5 * k * 1e9 / emc
    return 0.3 + 0.2 * 2e9 / cpu + (compute**3 + memory**3) ** (1 / 3)


def power_mw(grid: np.ndarray) -> np.ndarray:
    """Static + C V^2 f per domain with V linear in f, plus a CPU x EMC utilisation interaction (mW)."""
    cpu, gpu, emc = (grid[:, j] / grid[:, j].max() for j in range(3))
    return 1500 + 900 * cpu**3 + 150 * gpu**3 + 600 * emc * (0.4 + 0.6 * emc**2) + 200 * cpu * emc


def space(groups: tuple[int, ...] = (1,), mappings: tuple[str, ...] = ("gpu",)) -> Space:
    return Space.cartesian({"cpu": CPU_HZ, "gpu": GPU_HZ, "emc": EMC_HZ}, mappings, groups)


class ArraySource:
    """Answers from precomputed arrays aligned with a space's rows; counts what it was asked."""

    def __init__(self, space: Space, **values: np.ndarray) -> None:
        self.space = space
        self.values = values
        self.asked: list[int] = []
        self._row = {(p.mapping, tuple(sorted(p.setpoints.hz.items())), p.groups): i
                     for i, p in ((i, space.point(i)) for i in range(len(space.grid)))}

    def measure(self, point: ProfilePoint) -> Measurement:
        row = self._row[(point.mapping, tuple(sorted(point.setpoints.hz.items())), point.groups)]
        self.asked.append(row)
        return Measurement(**{name: float(v[row]) for name, v in self.values.items()})


def full_grid(*levels: tuple[float, ...]) -> np.ndarray:
    return np.array(list(itertools.product(*levels)), dtype=np.float64)
