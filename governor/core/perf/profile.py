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

Group counts that were never measured (``governor profile --groups 1,8`` on an 8-group network) are
predicted, not measured: a :class:`GroupPrediction` per (mapping, k), made by the layer-wise model
(:func:`governor.core.perf.layerwise.predict_unmeasured`), places k* the fraction ``phi`` of the way
from measured level ``lo`` to ``hi``, and every target there is ``M(lo) + phi (M(hi) - M(lo))`` at
the same clocks; its variance adds the anchors' (interpolated) and ``(phi_std (M(hi) - M(lo)))^2``.
:meth:`ProfileModel.is_predicted` tells such rows apart; the profile's measured points never hold them.
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

__all__ = ["DenseTable", "GroupPrediction", "ProfileModel", "UnknownTarget"]

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


@dataclass(frozen=True)
class GroupPrediction:
    """An unmeasured group count k, placed between the measured levels lo and hi (see the module doc).

    ``fraction`` (phi) and ``fraction_std`` are dimensionless: 0 at lo, 1 at hi (outside [0, 1] when
    k lies beyond every measured level). ``core``/``width`` (channels) name the layer-wise core used.
    """

    k: int
    lo: int
    hi: int
    fraction: float
    fraction_std: float
    core: str = "linear"
    width: float = 0.0

    def __post_init__(self) -> None:
        if self.lo == self.hi or self.k in (self.lo, self.hi) or not self.fraction_std >= 0:
            raise ValueError(f"k={self.k}: needs two distinct measured anchors other than k and a std >= 0")


@dataclass(frozen=True, eq=False)
class ProfileModel:
    """All fitted models of one profile (one network on one board)."""

    domains: tuple[str, ...]
    opp_hz: tuple[tuple[float, ...], ...]  # per domain: the frequencies the board offers, Hz
    mappings: tuple[str, ...]
    groups: tuple[int, ...]
    models: Mapping[tuple[str, str], TargetModel]
    simulated: bool = False
    # per mapping: unmeasured k -> how it is predicted (never measured; see GroupPrediction)
    predicted: Mapping[str, Mapping[int, GroupPrediction]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", MappingProxyType(dict(self.models)))
        object.__setattr__(self, "predicted", MappingProxyType(
            {m: MappingProxyType(dict(p)) for m, p in self.predicted.items()}))
        for mapping, per_k in self.predicted.items():
            wrong = [k for k, p in per_k.items() if k != p.k or k in self.groups
                     or p.lo not in self.groups or p.hi not in self.groups]
            if mapping not in self.mappings or wrong:
                raise ValueError(f"predicted groups {wrong} of {mapping!r} clash with the measured {self.groups}")

    def with_predicted(self, predicted: Mapping[str, Mapping[int, GroupPrediction]]) -> ProfileModel:
        """The same models, also answering at the predicted group counts."""
        return ProfileModel(self.domains, self.opp_hz, self.mappings, self.groups, self.models, self.simulated,
                            predicted)

    @property
    def predicted_groups(self) -> tuple[int, ...]:
        """Group counts predicted (for some mapping), never measured."""
        return tuple(sorted({k for per_k in self.predicted.values() for k in per_k}))

    def is_predicted(self, mapping: str, groups: FloatArray | Sequence[int]) -> npt.NDArray[np.bool_]:
        """Whether each k is a predicted (unmeasured) group count of ``mapping``."""
        known = list(self.predicted.get(mapping, {}))
        return np.isin(np.rint(np.asarray(groups, dtype=np.float64)).astype(np.int64), known)

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

    def _fitted(self, target: str, mapping: str, grid: FloatArray) -> tuple[FloatArray, FloatArray]:
        """One fitted model at ``grid``; rows at a predicted k interpolate between its anchors."""
        model = self.models[(target, mapping)]
        per_k = self.predicted.get(mapping)
        if not per_k:
            return model.predict(grid)
        grid = np.asarray(grid, dtype=np.float64)
        mean, std = model.predict(grid)
        rows = np.flatnonzero(self.is_predicted(mapping, grid[:, -1]))
        if len(rows) == 0:
            return mean, std
        preds = [per_k[round(float(k))] for k in grid[rows, -1]]
        lo_grid, hi_grid = grid[rows].copy(), grid[rows].copy()
        lo_grid[:, -1] = [p.lo for p in preds]
        hi_grid[:, -1] = [p.hi for p in preds]
        lo_mean, lo_std = model.predict(lo_grid)
        hi_mean, hi_std = model.predict(hi_grid)
        phi = np.array([p.fraction for p in preds])
        phi_std = np.array([p.fraction_std for p in preds])
        mean, std = mean.copy(), std.copy()
        mean[rows] = lo_mean + phi * (hi_mean - lo_mean)
        std[rows] = np.sqrt(((1 - phi) * lo_std) ** 2 + (phi * hi_std) ** 2 + (phi_std * (hi_mean - lo_mean)) ** 2)
        return mean, std

    def predict(self, target: str, mapping: str, grid: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation of ``target`` at grid rows ``[f_1..f_D (Hz), k]``."""
        if (target, mapping) in self.models:
            return self._fitted(target, mapping, grid)
        if self.has(target, mapping):
            t_mean, t_std = self._fitted("latency_ms", mapping, grid)
            p_mean, p_std = self._fitted("power_mw", mapping, grid)
            mean = p_mean * t_mean / 1000.0
            rel = np.sqrt((t_std / t_mean) ** 2 + (p_std / p_mean) ** 2)
            return mean, np.abs(mean) * rel
        have = ", ".join(f"{t}@{m}" for t, m in sorted(self.models)) or "nothing"
        raise UnknownTarget(f"the profile has no {target} model for mapping {mapping!r}; it has {have}")

    def opp_grid(self, groups: Sequence[int] | None = None) -> FloatArray:
        """Every combination of the domains' OPP frequencies (Hz) and group counts (default: measured and
        predicted), as grid rows."""
        ks = groups or sorted({*self.groups, *self.predicted_groups})
        levels = [*self.opp_hz, [float(k) for k in ks]]
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
