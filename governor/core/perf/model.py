"""Fitted performance models with uncertainty: one ensemble per (target, mapping).

Theory of operation
-------------------
For one target (``latency_ms``, ``power_mw``, a rail's ``<name>_mw`` or ``energy_mj``) and one
mapping, a library of physically motivated candidates (see :mod:`governor.core.perf.features`)
is fitted to the measured points. A candidate takes part only once the points pin every one of its
coefficients (full column rank, two points to spare). Each is scored by cross-validated MAPE:
leave-one-out up to 40 points (with few points, which points share a fold would decide too much),
K-fold beyond. The candidates within a factor of the best score form the ensemble, weighted by
``1 / cv^2``.

Uncertainty has two parts, both computed from the same fits:

- *epistemic*: the spread of the ensemble members around their weighted mean, plus each member's
  delete-a-fold jackknife variance ``(K - 1) / K * sum_i (f_i(x) - mean_i f_i(x))^2``. It is large
  where candidates disagree and far from measured points, which is exactly what the active sampler
  (:mod:`governor.core.perf.sampling`) looks for;
- *noise*: the best member's residual scale (relative), i.e. what a repeat measurement would scatter.

The out-of-fold predictions of the weighted ensemble give ``cv_mape``: the estimated error of the
model on points it has not seen, which the sampler's stopping rule compares with its target.

Latency candidates are fitted in two stages: the linear roofline with every k-basis first, then the
non-linear saturated roofline with the two best k-bases of stage one (it is 20-50x dearer to fit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from governor.core.perf.features import Axes, CandidateSpec, FloatArray, KBasis, memory_column
from governor.core.perf.fit import evaluate, fit, leverage, n_params
from governor.core.widening import widening

__all__ = ["Member", "TargetModel", "candidates_for", "fit_target", "group_bases", "target_kind"]

TargetKind = Literal["latency", "power", "energy"]
_KEEP_RATIO = 1.5  # members whose CV error is within this factor of the best stay in the ensemble
_KEEP_SLACK = 0.001  # ... or within 0.1 percentage point of it
_MAX_MEMBERS = 4
_LOO_UP_TO = 40  # points; above this, K-fold cross-validation
# (exponents, pair order, knots): small shapes for two dozen points, richer ones once there are hundreds
_POWER_SHAPES: tuple[tuple[tuple[float, ...], int, tuple[float, ...]], ...] = (
    ((1, 8), 1, ()), ((1, 2, 3), 0, ()), ((1, 2, 3), 1, ()), ((1, 2, 6), 1, ()), ((1, 3, 6), 1, ()),
    ((-1, 1, 2, 6), 1, ()), ((-1, 1, 8), 1, ()), ((-1, 1, 3), 1, ()),
    ((1, 2, 3), 2, ()), ((-1, 1, 2, 3), 2, ()), ((1, 2, 3), 2, (0.4, 0.6, 0.8)),
)
# stall-coupled power shapes (features.stall_columns): a busy unit whose work waits on the memory clock
_STALL_SHAPES: tuple[tuple[tuple[float, ...], int], ...] = (((1, 2, 3), 0), ((1, 2, 3), 1))
_STALL_BETAS = (0.03, 0.1, 0.3, 1.0, 3.0)  # memory time over compute time at the top clocks
# A stall-coupled shape also picks beta from its library: it is tried only with this many points per
# coefficient. With fewer (24 points on the real CPU grids) it won the cross-validation by chance as
# often as by merit, and the real membench grid's error rose from 2.39 to 2.56 %.
_STALL_POINTS_PER_PARAM = 2
_UNIDENTIFIED = 1.0  # cv_mape reported while no candidate has enough points to be pinned down
_BLACKTHORN_WIDTHS = tuple(range(8, 513, 8))  # channels per tile tried by Blackthorn's step core
_MAX_STEP_PATTERNS = 8


def target_kind(target: str) -> TargetKind:
    """latency_ms -> latency, energy_mj -> energy, power_mw and rails ``<name>_mw`` -> power."""
    if target == "latency_ms":
        return "latency"
    if target == "energy_mj":
        return "energy"
    if target.endswith("_mw"):
        return "power"
    raise ValueError(f"unknown target {target!r}: expected latency_ms, energy_mj, power_mw or <rail>_mw")


def _step_bases(kmax: int, channels: float) -> list[KBasis]:
    """Distinct, genuinely stepped patterns of floor((k c - 1) / w) over k = 1..kmax."""
    ks = np.arange(1, kmax + 1, dtype=np.float64)
    widths = sorted({*(channels * r for r in (1.5, *range(2, kmax + 1))), *_BLACKTHORN_WIDTHS})
    seen: set[tuple[float, ...]] = set()
    out: list[KBasis] = []
    for w in widths:
        pattern = tuple(np.floor((ks * channels - 1.0) / w))
        affine = len(ks) < 3 or np.allclose(np.diff(pattern, 2), 0.0)
        if affine or pattern in seen:
            continue
        seen.add(pattern)
        out.append(KBasis("step", width=float(w), channels=channels))
        if len(out) == _MAX_STEP_PATTERNS:
            break
    return out


def group_bases(kvalues: Sequence[int], channels_per_group: float = 1.0,
                curves: Sequence[KBasis] = ()) -> list[KBasis]:
    """The k-bases worth trying for a space whose group counts are ``kvalues``."""
    levels = sorted(set(kvalues))
    if len(levels) == 1:
        return [KBasis("const")]
    steps = _step_bases(max(levels), channels_per_group)
    hybrids = [KBasis("hybrid", width=s.width, channels=s.channels) for s in steps]
    return [KBasis("linear"), *steps, *hybrids, *curves,
            KBasis("onehot", values=tuple(float(v) for v in levels))]


def candidates_for(kind: TargetKind, bases: Sequence[KBasis], memory: int = -1) -> list[CandidateSpec]:
    """Stage-one candidate library of one target kind; ``memory``: the live column of the memory clock
    (-1: none), for power's stall-coupled shapes."""
    smooth = [b for b in bases if b.kind in ("const", "linear", "onehot", "curve")]
    if kind == "latency":
        return [*(CandidateSpec("roofline", b) for b in bases),
                *(CandidateSpec("logpoly", b, pairs=p) for b in smooth for p in (0, 1))]
    if kind == "power":
        plain = [CandidateSpec("poly", b, powers=s, pairs=p, knots=t) for b in smooth for s, p, t in _POWER_SHAPES]
        if memory < 0:
            return plain
        return [*plain, *(CandidateSpec("poly", b, powers=s, pairs=p, couple=beta, memory=memory)
                          for b in smooth for s, p in _STALL_SHAPES for beta in _STALL_BETAS)]
    return [*(CandidateSpec("poly", b, powers=(-1, 1, 2, 3)) for b in smooth),
            *(CandidateSpec("logpoly", b, pairs=p) for b in smooth for p in (0, 1))]


@dataclass(frozen=True)
class Member:
    """One fitted candidate: full-data parameters, per-fold parameters and its CV score."""

    spec: CandidateSpec
    params: FloatArray  # (P,)
    folds: FloatArray  # (K, P)
    cv_mape: float  # fraction, not percent
    weight: float = 1.0
    # per fold: the mean leverage of the points it left out (empty: 0, as in files written before it)
    fold_leverage: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {"spec": self.spec.to_dict(), "params": self.params.tolist(), "folds": self.folds.tolist(),
               "cv_mape": self.cv_mape, "weight": self.weight}
        return {**out, "fold_leverage": list(self.fold_leverage)} if self.fold_leverage else out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Member:
        params = np.asarray(data["params"], dtype=np.float64)
        folds = np.asarray(data["folds"], dtype=np.float64).reshape(-1, len(params))
        return cls(CandidateSpec.from_dict(data["spec"]), params, folds, float(data["cv_mape"]),
                   float(data["weight"]), tuple(float(h) for h in data.get("fold_leverage", ())))


@dataclass(frozen=True)
class _Scored:
    member: Member
    oof: FloatArray  # out-of-fold predictions at the measured points


@dataclass(frozen=True)
class TargetModel:
    """The ensemble for one target and mapping. ``predict`` is vectorised over grid rows."""

    target: str
    mapping: str
    axes: Axes
    members: tuple[Member, ...]
    cv_mape: float  # estimated relative error on unseen points (fraction)
    noise_rel: float  # relative scatter of a single measurement (fraction)
    n_points: int

    def predict(self, grid: FloatArray, *, noise: bool = True) -> tuple[FloatArray, FloatArray]:
        """Mean and standard deviation at grid rows ``[f_1..f_D (Hz), k]``, in the target's unit.

        The sd is predictive: epistemic and measurement scatter, widened by Student's t for the
        residual degrees of freedom both rest on (:attr:`widening`), so that 2 sd covers 95 % of new
        errors. ``noise=False`` gives the epistemic spread alone, unwidened: the sampler's measure of
        where the model is unsure, compared between candidates and with its stopping target.
        """
        mean, spread = self.spread(grid, unbiased=noise)
        epistemic = np.sum(spread**2, axis=1)
        if not noise:
            return mean, np.sqrt(epistemic)
        return mean, np.sqrt(epistemic + (self.noise_rel * mean) ** 2) * self.widening

    @property
    def residual_dof(self) -> int:
        """Points left after the best member's free coefficients (the trace of its hat matrix, the sum of
        the leverages; a coefficient held at a bound is not free): what its noise scale and jackknife rest
        on. Files without leverages count every coefficient."""
        best = self.members[0]
        free = float(np.mean(best.fold_leverage)) * self.n_points if best.fold_leverage else len(best.params)
        return self.n_points - round(free)

    @property
    def widening(self) -> float:
        """Student's t factor (>= 1) for :attr:`residual_dof`: x 2.20 for 8 points and 6 coefficients, where
        the bare sd put 50-63 % of the errors inside 2 sd on some draws and 100 % on others
        (docs/benchmarks.md, profiler 2b)."""
        return widening(self.residual_dof)

    def spread(self, grid: FloatArray, *, unbiased: bool = False) -> tuple[FloatArray, FloatArray]:
        """Mean (n) and deviation columns Z (n x r) with ``Z @ Z.T`` = the epistemic covariance.

        Columns are each member's jackknife fold deviations, scaled by ``sqrt(w (K - 1) / K)``, and
        each member's offset from the ensemble mean, scaled by ``sqrt(w)``. ``unbiased`` also scales
        each fold's deviation by ``sqrt(1 - h)``, h the mean leverage of the points it left out: the
        bare jackknife is HC3's estimate, too wide by ``1 / sqrt(1 - h)`` where few points decide
        the fit (:func:`governor.core.perf.fit.leverage`). The sampler ranks with the bare one.
        """
        g, k = self.axes.normalise(grid)
        means, columns = [], []
        for m in self.members:
            means.append(evaluate(m.spec, m.params, g, k, self.axes.kmax)[:, 0])
            folds = evaluate(m.spec, m.folds, g, k, self.axes.kmax)
            n_folds = folds.shape[1]
            scale = np.sqrt(m.weight * (n_folds - 1) / n_folds) if n_folds > 1 else 0.0
            if unbiased and len(m.fold_leverage) == n_folds:
                scale = scale * np.sqrt(1.0 - np.asarray(m.fold_leverage))
            columns.append(scale * (folds - folds.mean(axis=1, keepdims=True)))
        weights = np.array([m.weight for m in self.members])
        stack = np.stack(means)
        mean = weights @ stack
        offsets = (np.sqrt(weights)[:, None] * (stack - mean)).T
        return mean, np.column_stack([*columns, offsets])

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "mapping": self.mapping, "axes": self.axes.to_dict(),
                "members": [m.to_dict() for m in self.members], "cv_mape": self.cv_mape,
                "noise_rel": self.noise_rel, "n_points": self.n_points}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetModel:
        return cls(data["target"], data["mapping"], Axes.from_dict(data["axes"]),
                   tuple(Member.from_dict(m) for m in data["members"]), float(data["cv_mape"]),
                   float(data["noise_rel"]), int(data["n_points"]))


def _fold_ids(n: int, folds: int, seed: int, loo: bool) -> np.ndarray:
    # leave-one-out while it is affordable: with few points, which points share a fold decides too much
    return np.random.default_rng(seed).permutation(n) % (n if loo and n <= _LOO_UP_TO else folds)


def _score(spec: CandidateSpec, g: FloatArray, k: FloatArray, y: FloatArray, kmax: int,
           fold_ids: np.ndarray) -> _Scored:
    params = fit(spec, g, k, kmax, y)
    n_folds = int(fold_ids.max()) + 1
    folds = np.empty((n_folds, len(params)))
    oof = np.empty(len(y))
    for f in range(n_folds):
        test = fold_ids == f
        folds[f] = fit(spec, g[~test], k[~test], kmax, y[~test], start=params) if (~test).any() else params
        oof[test] = evaluate(spec, folds[f], g[test], k[test], kmax)[:, 0]
    err = np.abs(oof - y) / y
    cv = float(np.mean(np.where(np.isfinite(err), err, 1e6)))
    h = leverage(spec, params, g, k, kmax, y)
    fold_h = tuple(float(h[fold_ids == f].mean()) if np.any(fold_ids == f) else 0.0 for f in range(n_folds))
    return _Scored(Member(spec, params, folds, cv, fold_leverage=fold_h), oof)


def _identifiable(spec: CandidateSpec, g: FloatArray, k: FloatArray, kmax: int) -> bool:
    """Enough points, and points that pin every coefficient (full column rank of the design).

    An unpinned coefficient gets its value from the ridge; the warm-started jackknife then barely
    moves it, so its uncertainty would look small exactly where the model knows nothing.
    """
    size = n_params(spec, g.shape[1], kmax)
    if size > len(k) - 2:
        return False
    linear = CandidateSpec("roofline", spec.kbasis) if spec.form in ("saturated", "layered") else spec
    cols = linear.columns(g, k, kmax)
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms == 0) or np.linalg.matrix_rank(cols / norms, tol=1e-9) < cols.shape[1]:
        return False
    if spec.kbasis.kind == "onehot":
        per_level = size // len(spec.kbasis.values)
        return min(int(np.sum(k == level)) for level in spec.kbasis.values) >= per_level + 1
    return True


def _eligible(specs: Sequence[CandidateSpec], g: FloatArray, k: FloatArray,
              kmax: int) -> tuple[list[CandidateSpec], bool]:
    """The identifiable candidates, or (if none is yet) the smallest one and False."""
    ok = [s for s in specs if _identifiable(s, g, k, kmax)]
    if ok:
        return ok, True
    return [min(specs, key=lambda s: n_params(s, g.shape[1], kmax))], False


def _ensemble(scored: Sequence[_Scored], y: FloatArray) -> tuple[tuple[Member, ...], float]:
    ranked = sorted(scored, key=lambda s: s.member.cv_mape)
    best = ranked[0].member.cv_mape
    kept = [s for s in ranked if s.member.cv_mape <= max(best * _KEEP_RATIO, best + _KEEP_SLACK)]
    kept = kept[:_MAX_MEMBERS]
    raw = np.array([1.0 / max(s.member.cv_mape, 1e-4) ** 2 for s in kept])
    weights = raw / raw.sum()
    oof = weights @ np.stack([s.oof for s in kept])
    members = tuple(
        dataclasses.replace(s.member, weight=float(w))
        for s, w in zip(kept, weights, strict=True)
    )
    return members, float(np.mean(np.abs(oof - y) / y))


def _noise(member: Member, g: FloatArray, k: FloatArray, y: FloatArray, kmax: int) -> float:
    dof = len(y) - len(member.params)
    if dof <= 0:
        return member.cv_mape
    resid = evaluate(member.spec, member.params, g, k, kmax)[:, 0] / y - 1.0
    return float(np.sqrt(np.sum(resid**2) / dof))


def fit_target(target: str, mapping: str, axes: Axes, grid: FloatArray, y: FloatArray,
               bases: Sequence[KBasis], *, folds: int = 10, seed: int = 0) -> TargetModel:
    """Fit the candidate library of ``target`` to measured rows ``grid`` (Hz, k) and values y > 0."""
    y = np.asarray(y, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    axes = dataclasses.replace(axes, live=tuple(bool(np.ptp(grid[:, j]) > 0) for j in range(len(axes.domains))))
    g, k = axes.normalise(grid)
    kind = target_kind(target)
    fold_ids = _fold_ids(len(y), folds, seed, loo=True)
    library = [s for s in candidates_for(kind, bases, memory_column(axes))
               if not s.couple or len(y) >= _STALL_POINTS_PER_PARAM * n_params(s, g.shape[1], axes.kmax)]
    specs, identified = _eligible(library, g, k, axes.kmax)
    scored = [_score(s, g, k, y, axes.kmax, fold_ids) for s in specs]
    if kind == "latency":
        rooflines = sorted((s for s in scored if s.member.spec.form == "roofline"),
                           key=lambda s: s.member.cv_mape)
        stage2 = [CandidateSpec(form, s.member.spec.kbasis) for s in rooflines[:2] for form in ("saturated", "layered")]
        stage2 = [s for s in stage2 if g.shape[1] and _identifiable(s, g, k, axes.kmax)]
        # non-linear fits cost 20-50x more: K folds even while leave-one-out is affordable for the rest
        kfold = _fold_ids(len(y), folds, seed, loo=False)
        scored += [_score(s, g, k, y, axes.kmax, kfold) for s in stage2]
    members, cv = _ensemble(scored, y)
    if not identified:
        cv = max(cv, _UNIDENTIFIED)  # a model that only steers the sampler must never satisfy its target
    return TargetModel(target, mapping, axes, members, cv, _noise(members[0], g, k, y, axes.kmax), len(y))
