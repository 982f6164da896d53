"""A loaded profile's models: predictions over any grid and a dense table over the board's OPP grid.

Theory of operation
-------------------
A :class:`ProfileModel` is the set of fitted :class:`~governor.core.perf.model.TargetModel` ensembles
of one profile, keyed by (target, mapping). Grids are float arrays with one row per operating point,
columns ``[f_1 .. f_D (Hz), k]`` in the profile's domain order. Energy per inference that was not
measured directly is derived from latency and power of the same point: ``E (mJ) = P (mW) x t (ms) /
1000``, its relative uncertainty the root-sum-square of theirs (their errors are taken independent).

The daemon decides within microseconds, so it never evaluates models per decision: it asks for a
:class:`DenseTable` once (every OPP combination x group count x mapping, a few 10^4 rows, fitted in
one vectorised pass per target) and then indexes arrays.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from governor.core.perf.features import FloatArray
from governor.core.perf.model import TargetModel

__all__ = ["DenseTable", "ProfileModel", "UnknownTarget"]

IntArray = npt.NDArray[np.int64]


class UnknownTarget(KeyError):
    """The profile has no model for this target and mapping; the message lists what it has."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, eq=False)
class DenseTable:
    """Predictions at every (mapping, OPP combination, k). Arrays are aligned with ``grid`` rows."""

    domains: tuple[str, ...]
    mappings: tuple[str, ...]
    grid: FloatArray  # (N, D+1): Hz per domain, then k
    mapping_of: IntArray  # (N,): index into ``mappings``
    mean: Mapping[str, FloatArray]
    std: Mapping[str, FloatArray]
    simulated: bool
    _rows: dict[tuple[int, tuple[float, ...]], int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rows = {(int(m), tuple(r)): i for i, (m, r) in enumerate(zip(self.mapping_of, self.grid.tolist(), strict=True))}
        object.__setattr__(self, "_rows", rows)

    def row(self, mapping: str, setpoints_hz: Mapping[str, float], groups: int) -> int:
        """Row index of one operating point; KeyError if it is not on the OPP grid."""
        key = (*(float(setpoints_hz[d]) for d in self.domains), float(groups))
        return self._rows[(self.mappings.index(mapping), key)]


@dataclass(frozen=True, eq=False)
class ProfileModel:
    """All fitted models of one profile (one network on one board)."""

    domains: tuple[str, ...]
    opp_hz: tuple[tuple[float, ...], ...]  # per domain: the frequencies the board offers, Hz
    mappings: tuple[str, ...]
    groups: tuple[int, ...]
    models: Mapping[tuple[str, str], TargetModel]
    simulated: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))

    @property
    def targets(self) -> tuple[str, ...]:
        """Modelled targets, measured or derived (energy from latency and power)."""
        names = sorted({t for t, _ in self.models})
        if "energy_mj" not in names and {"latency_ms", "power_mw"} <= set(names):
            names.append("energy_mj")
        return tuple(names)

    def has(self, target: str, mapping: str) -> bool:
        if (target, mapping) in self.models:
            return True
        return target == "energy_mj" and all((t, mapping) in self.models for t in ("latency_ms", "power_mw"))

    def predict(self, target: str, mapping: str, grid: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation of ``target`` at grid rows ``[f_1..f_D (Hz), k]``."""
        model = self.models.get((target, mapping))
        if model is not None:
            return model.predict(grid)
        if self.has(target, mapping):
            t_mean, t_std = self.models[("latency_ms", mapping)].predict(grid)
            p_mean, p_std = self.models[("power_mw", mapping)].predict(grid)
            mean = p_mean * t_mean / 1000.0
            rel = np.sqrt((t_std / t_mean) ** 2 + (p_std / p_mean) ** 2)
            return mean, np.abs(mean) * rel
        have = ", ".join(f"{t}@{m}" for t, m in sorted(self.models)) or "nothing"
        raise UnknownTarget(f"the profile has no {target} model for mapping {mapping!r}; it has {have}")

    def opp_grid(self, groups: Sequence[int] | None = None) -> FloatArray:
        """Every combination of the domains' OPP frequencies (Hz) and group counts, as grid rows."""
        levels = [*self.opp_hz, [float(k) for k in (groups or self.groups)]]
        return np.array(list(itertools.product(*levels)), dtype=np.float64).reshape(-1, len(levels))

    def dense_table(self, targets: Sequence[str] | None = None,
                    groups: Sequence[int] | None = None) -> DenseTable:
        """Predict every target over the full OPP grid of every mapping (rows a mapping lacks are NaN)."""
        grid = self.opp_grid(groups)
        wanted = tuple(targets or self.targets)
        n = len(grid)
        full_grid = np.tile(grid, (len(self.mappings), 1))
        mapping_of = np.repeat(np.arange(len(self.mappings)), n)
        mean = {t: np.full(len(full_grid), np.nan) for t in wanted}
        std = {t: np.full(len(full_grid), np.nan) for t in wanted}
        for i, mapping in enumerate(self.mappings):
            for t in wanted:
                if self.has(t, mapping):
                    mean[t][i * n:(i + 1) * n], std[t][i * n:(i + 1) * n] = self.predict(t, mapping, grid)
        return DenseTable(self.domains, self.mappings, full_grid, mapping_of,
                          MappingProxyType(mean), MappingProxyType(std), self.simulated)
