"""Building the optimiser's table of operating points and their predictions.

On a generic host the table is *measured* at start: every (threads, k) point is run a few times on
the real network and its median latency kept (tens of milliseconds in all for the bundled model).
Without a power sensor, energy is unknown; the table then ranks points by core-time
(threads x latency, reported as ``energy_proxy``), which orders them as energy would on one
cluster at fixed clocks, and replies carry ``energy_mj = null``.

On a board (or a simulated one) the table comes from a profile fitted by ``governor profile``:
see :func:`profile_table`.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from governor.core.board import BoardSpec
from governor.core.decision.optimiser import DecisionTable
from governor.core.modelmeta import ModelMeta
from governor.core.types import OperatingPoint, Setpoints

__all__ = ["MeasuredTable", "host_points", "measure_table"]

# Nominal energy per busy core per ms of run time, only to rank points when no sensor exists (mJ).
CORE_MS_PROXY_MJ = 1.0


@dataclass(frozen=True)
class MeasuredTable:
    table: DecisionTable
    energy_measured: bool
    reps: int
    idle_power_mw: float | None = None  # the board's idle power when profiled, mW (None: unknown)


def host_points(spec: BoardSpec, meta: ModelMeta, cpu_count: int, max_threads: int = 8) -> list[OperatingPoint]:
    """(unit, threads, k) for every CPU unit of a board whose clocks we do not set."""
    points = []
    for unit in spec.units:
        if unit.kind != "cpu":
            continue
        cores = len(unit.cpus) or cpu_count
        for threads in range(1, min(cores, max_threads) + 1):
            points += [OperatingPoint(unit.name, threads, Setpoints({}), k) for k in range(1, meta.groups + 1)]
    return points


def measure_table(
    points: Sequence[OperatingPoint],
    run: Callable[[OperatingPoint], tuple[float, float | None]],
    meta: ModelMeta,
    *,
    reps: int = 15,
    simulated: bool = False,
) -> MeasuredTable:
    """Run each point ``reps`` times (``run`` returns latency ms and energy mJ or None); keep medians."""
    if reps < 1:
        raise ValueError("reps must be at least 1")
    lat: list[float] = []
    joules: list[float | None] = []
    for point in points:
        samples = [run(point) for _ in range(reps)]
        lat.append(statistics.median(s[0] for s in samples))
        known = [s[1] for s in samples if s[1] is not None]
        joules.append(statistics.median(known) if len(known) == len(samples) else None)
    measured = all(j is not None for j in joules)
    # Never mix measured energy with the proxy in one table.
    energy = joules if measured else [p.threads * la * CORE_MS_PROXY_MJ for p, la in zip(points, lat, strict=True)]
    accuracy = [meta.accuracy_rank(p.groups) for p in points]
    table = DecisionTable(tuple(points), np.array(lat), np.array(energy), np.array(accuracy), simulated=simulated)
    return MeasuredTable(table, measured, reps)
