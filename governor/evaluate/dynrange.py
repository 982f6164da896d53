"""Dynamic range as the group-pruning paper states it: max/min time and energy per inference.

Two knob sets, both measured on a fresh idle simulated board through the drivers:

* **groups only**: the baseline mapping (the fastest full-network unit) with every domain pinned
  at its top clock, k = 1..G;
* **groups + DVFS + mapping**: every point of the profile; the profile locates the fastest,
  slowest, cheapest and dearest points, and those are then run on the board.

Each point is run ``reps`` times after one warm-up run; the median is kept. The paper (MLCAD 2019,
papers.md §3) reports 2.73x time / 2.36x energy for its dynamic DNN and 41.6x / 10.6x with DVFS
and task mapping; its abstract calls these "wider dynamic range" against earlier dynamic DNNs, so
the comparison with our max/min ratios is loose. Every figure here is simulated.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

import numpy as np

from governor.core.types import OperatingPoint, Setpoints
from governor.daemon.target import open_target
from governor.evaluate.models import EvalModel
from governor.evaluate.policies import PolicyContext
from governor.sim import SimExecutor

__all__ = ["PAPER_RANGES", "DynamicRange", "RangeFigures", "dynamic_range"]

# (time, energy) max/min, papers.md §3
PAPER_RANGES = {"groups only": (2.73, 2.36), "groups + DVFS + mapping": (41.6, 10.6)}


@dataclass(frozen=True)
class RangeFigures:
    """Max/min ratios (time, energy) and the points that set them (simulated)."""

    time_ratio: float
    energy_ratio: float
    fastest: str
    slowest: str
    cheapest: str
    dearest: str
    simulated: bool = True


@dataclass(frozen=True)
class DynamicRange:
    board: str
    model: str
    groups_only: RangeFigures
    full: RangeFigures
    simulated: bool = True


def describe(point: OperatingPoint) -> str:
    clocks = ", ".join(f"{d} {hz / 1e6:.0f} MHz" for d, hz in sorted(point.setpoints.hz.items()))
    return f"{point.unit}/{point.threads} k={point.groups} ({clocks})"


def _measure(board: str, model: EvalModel, points: list[OperatingPoint], seed: int, reps: int,
             ) -> list[tuple[float, float]]:
    """(median latency ms, median energy mJ) per point on a fresh idle simulated board."""
    target = open_target(board, clock="virtual", seed=seed)
    try:
        assert target.sim is not None
        executor = SimExecutor(target.sim, model.workload)
        out = []
        for point in points:
            target.board.apply(point.setpoints)
            runs = [executor.run(point.unit, k=point.groups, threads=point.threads) for _ in range(reps + 1)][1:]
            out.append((statistics.median(r.latency_ms for r in runs), statistics.median(r.energy_mj for r in runs)))
        return out
    finally:
        target.close()


def _figures(points: list[OperatingPoint], measured: list[tuple[float, float]]) -> RangeFigures:
    lat, energy = np.array([m[0] for m in measured]), np.array([m[1] for m in measured])
    return RangeFigures(float(lat.max() / lat.min()), float(energy.max() / energy.min()),
                        describe(points[int(lat.argmin())]), describe(points[int(lat.argmax())]),
                        describe(points[int(energy.argmin())]), describe(points[int(energy.argmax())]))


def dynamic_range(ctx: PolicyContext, board: str, model: EvalModel, *, seed: int = 0, reps: int = 3) -> DynamicRange:
    t = ctx.profile.table
    top = Setpoints(ctx.top_hz)
    groups_only = []
    for k in range(1, model.meta.groups + 1):
        rows = ctx.mapping_rows(k)
        if rows.size:
            groups_only.append(dataclasses.replace(t.points[int(rows[np.argmin(t.latency_ms[rows])])], setpoints=top))
    extremes = dict.fromkeys(int(i) for i in (t.latency_ms.argmin(), t.latency_ms.argmax(),
                                              t.energy_mj.argmin(), t.energy_mj.argmax()))
    full = [t.points[i] for i in extremes]
    measured = _measure(board, model, groups_only + full, seed, reps)
    # The full knob space contains the groups-only points, so its range is taken over every point run.
    return DynamicRange(board, model.name, _figures(groups_only, measured[:len(groups_only)]),
                        _figures(groups_only + full, measured))
