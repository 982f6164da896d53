"""What a profile is measured over: points, measurements, sources and the candidate space.

Theory of operation
-------------------
A :class:`ProfilePoint` is one operating point to measure: a mapping (the compute unit the network
runs on), the setpoint of every DVFS domain (Hz) and the number of active groups k. A
:class:`MeasurementSource` turns a point into a :class:`Measurement` (latency ms, board power mW,
energy mJ per inference, per-rail power mW); boards, the simulator and recorded tables all
implement it. A :class:`Space` is the finite set of points a source can measure, as grid rows
``[f_1 .. f_D (Hz), k]`` plus each row's mapping, and knows the board's OPP frequencies so the
models can later be evaluated on the full grid. Pure values; no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

import numpy as np
import numpy.typing as npt

from governor.core.perf.features import Axes, FloatArray
from governor.core.types import Setpoints

__all__ = ["Measurement", "MeasurementSource", "ProfilePoint", "Space"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ProfilePoint:
    """One thing to measure: a mapping (compute unit), its setpoints (Hz) and active groups k."""

    mapping: str
    setpoints: Setpoints
    groups: int


@dataclass(frozen=True)
class Measurement:
    """What a source measured at one point. Missing quantities are None (rails: absent)."""

    latency_ms: float | None = None
    power_mw: float | None = None  # board total
    energy_mj: float | None = None  # per inference
    rails_mw: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    simulated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "rails_mw", MappingProxyType(dict(self.rails_mw)))
        bad = {k: v for k, v in self.values().items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"measured values must be finite and positive, got {bad}")

    def values(self) -> dict[str, float]:
        """Target name -> value for every quantity present (rails as ``<rail>_mw``)."""
        out = {name: float(v) for name, v in (("latency_ms", self.latency_ms), ("power_mw", self.power_mw),
                                               ("energy_mj", self.energy_mj)) if v is not None}
        out.update({f"{rail}_mw": float(v) for rail, v in self.rails_mw.items()})
        return out


class MeasurementSource(Protocol):
    """Anything that can measure a point: a board, a simulator, a recorded table."""

    def measure(self, point: ProfilePoint) -> Measurement: ...


@dataclass(frozen=True, eq=False)
class Space:
    """The candidate points: grid rows ``[f_1..f_D (Hz), k]`` and the mapping of each row."""

    domains: tuple[str, ...]
    grid: FloatArray  # (n, D+1)
    mapping_of: IntArray  # (n,)
    mappings: tuple[str, ...]
    opp_hz: tuple[tuple[float, ...], ...]  # per domain: every frequency the board offers (Hz)
    channels_per_group: float = 1.0

    def __post_init__(self) -> None:
        if self.grid.ndim != 2 or self.grid.shape[1] != len(self.domains) + 1 or len(self.grid) == 0:
            raise ValueError(f"space grid must be non-empty with {len(self.domains) + 1} columns")
        if len(self.mapping_of) != len(self.grid) or len(self.opp_hz) != len(self.domains):
            raise ValueError("space arrays are not aligned")

    @classmethod
    def cartesian(cls, opp_hz: Mapping[str, Sequence[float]], mappings: Sequence[str],
                  groups: Sequence[int], channels_per_group: float = 1.0) -> Space:
        """Every combination of the domains' frequencies (Hz), group counts and mappings."""
        levels = [[float(f) for f in fs] for fs in opp_hz.values()] + [[float(k) for k in groups]]
        rows = np.array(list(itertools.product(*levels)), dtype=np.float64)
        grid = np.tile(rows, (len(mappings), 1))
        mapping_of = np.repeat(np.arange(len(mappings)), len(rows))
        return cls(tuple(opp_hz), grid, mapping_of, tuple(mappings),
                   tuple(tuple(sorted(float(f) for f in fs)) for fs in opp_hz.values()), channels_per_group)

    @property
    def groups(self) -> tuple[int, ...]:
        return tuple(sorted({int(k) for k in self.grid[:, -1]}))

    def axes(self) -> Axes:
        return Axes(self.domains, tuple(max(fs) for fs in self.opp_hz), max(self.groups))

    def point(self, index: int) -> ProfilePoint:
        row = self.grid[index]
        hz = {d: round(float(f)) for d, f in zip(self.domains, row[:-1], strict=True)}
        return ProfilePoint(self.mappings[int(self.mapping_of[index])], Setpoints(hz), int(row[-1]))

    def unit_coords(self) -> FloatArray:
        """Rows on [0, 1] axes: log frequency per domain, linear k (constant axes are 0)."""
        logs = np.log(self.grid[:, :-1])
        lo = np.log([min(fs) for fs in self.opp_hz])
        hi = np.log([max(fs) for fs in self.opp_hz])
        kmin, kmax = min(self.groups), max(self.groups)
        freq = (logs - lo) / np.where(hi > lo, hi - lo, 1.0)
        k = (self.grid[:, -1] - kmin) / max(kmax - kmin, 1)
        return np.column_stack([freq, k])

    def corners(self, mapping: int) -> list[int]:
        """Candidates nearest the 2^d corners of one mapping's box, without repeats."""
        rows = np.flatnonzero(self.mapping_of == mapping)
        unit = self.unit_coords()[rows]
        lo, hi = unit.min(axis=0), unit.max(axis=0)
        live = np.flatnonzero(hi > lo)
        picked: list[int] = []
        for bits in itertools.product((0, 1), repeat=len(live)):
            corner = lo.copy()
            corner[live] = np.where(np.array(bits, dtype=bool), hi[live], lo[live])
            best = int(rows[np.argmin(np.sum((unit - corner) ** 2, axis=1))])
            if best not in picked:
                picked.append(best)
        return picked
