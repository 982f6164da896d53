"""Values the simulator's engine hands around: jobs in flight, per-unit load, the noiseless truth."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

from governor.core.physics import Workload

__all__ = ["Job", "Truth", "UnitLoad"]

_IDS = itertools.count(1)


@dataclass
class Job:
    """One inference in flight on ``unit`` (progress 0..1); times in sim seconds, energy in mJ."""

    unit: str
    threads: int
    workload: Workload
    k: int
    start_s: float
    progress: float = 0.0
    finish_s: float | None = None
    energy_mj: float = 0.0
    id: int = field(default_factory=lambda: next(_IDS))

    @property
    def done(self) -> bool:
        return self.finish_s is not None


@dataclass
class UnitLoad:
    """A unit's load this step: busy cores (CPU) or fraction (GPU), stall-weighted busy, DRAM B/s."""

    busy: float = 0.0
    stall_busy: float = 0.0
    traffic: float = 0.0
    rates: dict[int, float] = field(default_factory=dict)  # job id -> progress per second


@dataclass(frozen=True)
class Truth:
    """The simulator's own view at one instant (no sensor noise); every figure is simulated."""

    t: float
    freqs_hz: Mapping[str, float]
    caps_hz: Mapping[str, float]
    rails_mw: Mapping[str, float]
    total_mw: float
    temps_c: Mapping[str, float]
    util: Mapping[str, float]
    simulated: bool = True
