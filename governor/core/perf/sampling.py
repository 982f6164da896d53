"""Active selection of the operating points a profile measures (Blackthorn's idea, over DVFS space).

Theory of operation
-------------------
The candidates are the points a source can measure: every (mapping, OPP combination, group count)
of a board, or every row of a recorded table. Measuring them all costs hours on a board; a
well-chosen few dozen pin the physics down. The :class:`ActiveSampler` is a sans-IO state machine:
``next_batch()`` says which candidates to measure, ``record()`` takes the results in, and the
caller (the CLI, a test, the daemon's board source) does the measuring. :func:`run_sampler` is that
loop for any :class:`MeasurementSource`.

1. *Extremes first*: for every mapping, the 2^d corners of its box (d = axes with more than one
   value: each frequency domain, and k).
2. *Greedy disagreement x distance*: refit the ensembles of every target
   (:func:`governor.core.perf.model.fit_target`). Their relative epistemic deviations (jackknife
   folds and member-vs-member disagreement, :meth:`TargetModel.spread`) form a joint Gaussian over
   all candidates. A candidate's *gain* is how much measuring it would shrink that variance summed
   over every candidate (Cohn's active-learning criterion: plain maximum disagreement chases the
   box edges, where a TX2 power grid has its worst outliers, and does worse on the bulk). The
   score is gain x distance to the nearest measured point of the same mapping, on axes normalised
   to [0, 1] in log frequency (DVFS tables are roughly geometric) and linear k. Batches grow with
   the number of points (10 %) so refits stay affordable; within a batch each pick conditions the
   Gaussian (a rank-one update) and shrinks its neighbours' distance, which spreads the batch.
3. *Stop* when every (target, mapping) ensemble's estimated MAPE is under the target (the larger
   of its cross-validated MAPE and its mean epistemic spread over all candidates), at
   ``max_points``, or when no candidate is left.

Frequencies are Hz throughout; latency ms, power mW, energy mJ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from governor.core.perf.features import FloatArray, KBasis
from governor.core.perf.model import TargetModel, fit_target, group_bases
from governor.core.perf.profile import ProfileModel
from governor.core.perf.space import Measurement, MeasurementSource, ProfilePoint, Space

__all__ = [
    "ActiveSampler",
    "Measurement",
    "MeasurementSource",
    "ProfilePoint",
    "SamplerSettings",
    "SamplerStatus",
    "Space",
    "fit_profile",
    "run_sampler",
]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SamplerSettings:
    """How much to measure: at most ``max_points``, stopping early once every model's estimated
    MAPE is under ``target_mape_pct`` (percent)."""

    max_points: int = 48
    target_mape_pct: float = 2.0
    targets: tuple[str, ...] = ()  # which measured quantities steer sampling and stopping ('' = all)
    folds: int = 10
    seed: int = 0
    batch_fraction: float = 0.1
    curves: tuple[KBasis, ...] = ()  # extra k-bases, e.g. MACs(k) from the model file

    def __post_init__(self) -> None:
        if self.max_points < 2:
            raise ValueError("max_points must be at least 2")
        if not 0 < self.target_mape_pct < 100:
            raise ValueError("target_mape_pct must be a percentage between 0 and 100")


@dataclass(frozen=True)
class SamplerStatus:
    """Progress of a sampling run."""

    measured: int
    candidates: int
    estimated_mape_pct: Mapping[str, float]  # "<target>@<mapping>" -> estimated MAPE, % (see stop rule)
    stopped: str  # "" while running; "target", "max-points" or "exhausted"


def fit_profile(space: Space, measured: Mapping[int, Measurement], settings: SamplerSettings,
                mappings: Iterable[int] | None = None,
                previous: Mapping[tuple[str, str], TargetModel] | None = None) -> ProfileModel:
    """Fit every measured target of every mapping (only ``mappings`` are refitted if given).

    Energy is modelled directly only when latency or power is missing; otherwise the profile
    derives it as power x latency (:meth:`ProfileModel.predict`).
    """
    models = dict(previous or {})
    axes = space.axes()
    bases = group_bases(space.groups, space.channels_per_group, settings.curves)
    for m in mappings if mappings is not None else range(len(space.mappings)):
        rows = [i for i in measured if space.mapping_of[i] == m]
        targets = {t for i in rows for t in measured[i].values()}
        if {"latency_ms", "power_mw"} <= targets:
            # P x t of two good models beats a third model of their product (energy stays in the points)
            targets.discard("energy_mj")
        for target in sorted(targets):
            have = [i for i in rows if target in measured[i].values()]
            y = np.array([measured[i].values()[target] for i in have])
            if len(have) >= 2 and np.all(y > 0):
                models[(target, space.mappings[m])] = fit_target(
                    target, space.mappings[m], axes, space.grid[have], y, bases,
                    folds=settings.folds, seed=settings.seed)
    return ProfileModel(space.domains, space.opp_hz, space.mappings, space.groups, models,
                        simulated=any(v.simulated for v in measured.values()))


class ActiveSampler:
    """Chooses points to measure; feed it with :meth:`record`. Deterministic for a given seed."""

    def __init__(self, space: Space, settings: SamplerSettings | None = None) -> None:
        self.space = space
        self.settings = settings or SamplerSettings()
        self._unit = space.unit_coords()
        self._measured: dict[int, Measurement] = {}
        self._corners = [i for m in range(len(space.mappings)) for i in space.corners(m)]
        self._dirty: set[int] = set()
        self._model: ProfileModel | None = None
        self._estimates: dict[tuple[str, str], float] | None = None
        self._stopped = ""

    @property
    def measured(self) -> Mapping[int, Measurement]:
        return MappingProxyType(self._measured)

    def record(self, index: int, measurement: Measurement) -> None:
        self._measured[index] = measurement
        self._dirty.add(int(self.space.mapping_of[index]))

    def model(self) -> ProfileModel:
        """The models fitted to everything recorded so far."""
        if self._model is None or self._dirty:
            previous = self._model.models if self._model is not None else None
            self._model = fit_profile(self.space, self._measured, self.settings, sorted(self._dirty), previous)
            self._dirty.clear()
            self._estimates = None
        return self._model

    def _steering(self) -> list[tuple[str, str]]:
        wanted = set(self.settings.targets)
        return [key for key in self.model().models if not wanted or key[0] in wanted]

    def estimated_mape_pct(self) -> dict[tuple[str, str], float]:
        """Per steering (target, mapping): the larger of the ensemble's cross-validated MAPE and its
        mean relative epistemic spread over all candidates (x sqrt(2/pi), the mean absolute value of
        a normal error). CV alone can look good while whole regions (a k never measured) are unknown.
        """
        model = self.model()
        if self._estimates is None:
            self._estimates = {}
            for target, mapping in self._steering():
                fitted = model.models[(target, mapping)]
                rows = self.space.mapping_of == self.space.mappings.index(mapping)
                mean, std = fitted.predict(self.space.grid[rows], noise=False)
                spread = float(np.mean(np.nan_to_num(std / np.abs(mean), nan=1.0, posinf=1.0)))
                self._estimates[(target, mapping)] = 100.0 * max(fitted.cv_mape, float(np.sqrt(2 / np.pi)) * spread)
        return dict(self._estimates)

    def status(self) -> SamplerStatus:
        est = {f"{t}@{m}": v for (t, m), v in self.estimated_mape_pct().items()}
        return SamplerStatus(len(self._measured), len(self.space.grid), MappingProxyType(est), self._stopped)

    def next_batch(self) -> list[int]:
        """Candidate indices to measure next; empty when sampling is over (see :meth:`status`)."""
        budget = self.settings.max_points - len(self._measured)
        corners = [i for i in self._corners if i not in self._measured]
        if corners and budget > 0:
            return corners[:budget]
        self._stopped = self._stop_reason(budget)
        if self._stopped:
            return []
        size = max(1, min(budget, round(self.settings.batch_fraction * len(self._measured))))
        return self._pick(size)

    def _stop_reason(self, budget: int) -> str:
        if len(self._measured) == len(self.space.grid):
            return "exhausted"  # also when the budget ran out on the last candidate: nothing was left out
        if budget <= 0:
            return "max-points"
        estimates = self.estimated_mape_pct()
        enough = len(self._measured) >= len(self._corners) + 2
        if enough and estimates and max(estimates.values()) < self.settings.target_mape_pct:
            return "target"
        return ""

    def _deviations(self, todo: IntArray) -> tuple[FloatArray, float]:
        """Relative epistemic deviation columns of every steering model at candidates ``todo``.

        A mapping with every candidate measured has nothing left to learn from: its models add no
        columns (and their noise does not blunt the gains of the mappings still open).
        """
        models = self.model().models
        blocks, noise = [], [0.0]
        for target, mapping in self._steering():
            rows = self.space.mapping_of[todo] == self.space.mappings.index(mapping)
            if not rows.any():
                continue
            mean, spread = models[(target, mapping)].spread(self.space.grid[todo[rows]])
            block = np.zeros((len(todo), spread.shape[1]))
            block[rows] = np.nan_to_num(spread / np.where(mean > 0, mean, np.inf)[:, None])
            blocks.append(block)
            noise.append(models[(target, mapping)].noise_rel ** 2)
        return (np.column_stack(blocks) if blocks else np.zeros((len(todo), 1))), max(noise)

    def _distances(self, todo: IntArray) -> FloatArray:
        done = np.fromiter(self._measured, dtype=np.int64)
        distance = np.full(len(todo), np.inf)
        for m in range(len(self.space.mappings)):
            rows = self.space.mapping_of[todo] == m
            mine = done[self.space.mapping_of[done] == m]
            if rows.any() and len(mine):
                diff = self._unit[todo[rows]][:, None, :] - self._unit[mine][None, :, :]
                distance[rows] = np.sqrt(np.min(np.sum(diff**2, axis=2), axis=1))
        return np.where(np.isfinite(distance), distance, np.sqrt(self._unit.shape[1]))

    def _pick(self, size: int) -> list[int]:
        todo = np.setdiff1d(np.arange(len(self.space.grid)), np.fromiter(self._measured, dtype=np.int64))
        dev, noise = self._deviations(todo)
        distance = self._distances(todo)
        picked: list[int] = []
        for _ in range(min(size, len(todo))):
            # expected fall of the variance summed over all candidates if this one were measured
            reach = dev @ (dev.T @ dev)
            gain = np.einsum("ij,ij->i", reach, dev) / (np.einsum("ij,ij->i", dev, dev) + noise + 1e-12)
            # distance breaks ties where no model disagrees yet (or models are exact)
            score = gain * distance + 1e-12 * distance
            score[np.isin(todo, picked)] = -np.inf
            best = int(np.argmax(score))
            picked.append(int(todo[best]))
            dev = _condition(dev, dev[best].copy(), noise)
            same = self.space.mapping_of[todo] == self.space.mapping_of[todo[best]]
            near = np.sqrt(np.sum((self._unit[todo] - self._unit[todo[best]]) ** 2, axis=1))
            distance = np.where(same, np.minimum(distance, near), distance)
        return picked


def _condition(dev: FloatArray, z: FloatArray, noise: float) -> FloatArray:
    """Deviation columns after observing the point with deviations z (a Gaussian rank-one update)."""
    norm2 = float(z @ z)
    if norm2 <= 0.0:
        return dev
    beta = (1.0 - np.sqrt(noise / (norm2 + noise))) / norm2
    return np.asarray(dev - beta * np.outer(dev @ z, z))


def run_sampler(source: MeasurementSource, sampler: ActiveSampler) -> ProfileModel:
    """Measure what the sampler asks for until it stops; returns the final models."""
    while batch := sampler.next_batch():
        for index in batch:
            sampler.record(index, source.measure(sampler.space.point(index)))
    return sampler.model()
