"""Layer-wise latency vs channel count (Blackthorn's step and linear cores), network = sum of layers.

Theory of operation
-------------------
On a GPU a convolution runs as tiles of w output channels, so one layer's latency is a staircase
in its channel count x: ``t(x) = d + floor((x - 1) / w) * h`` (the *step* core; w is the tile
width, 8..512 channels); on a CPU, or once tiles are tiny against x, it is a line ``t(x) = d + h x``
(the *linear* core). For each candidate w the step core is linear in (d, h), so every candidate is
an ordinary least-squares fit; the cores are compared by leave-one-out error, which charges the
step core for its extra freedom (Blackthorn multiplies the linear core's error by 10 instead).

:func:`sample_layer` chooses which channel counts to benchmark, as Blackthorn does: start near
both ends of the range (64 and 960 of 1..1024), then measure where the surviving candidates
disagree most, weighted towards the gaps between measured points; drop candidates whose error
exceeds the best's by a ratio that tightens from 20 to 2 over 16 rounds; stop once one candidate
is left after at least 6 points, or at ``max_points``.

A group-pruned network with k active groups runs every layer at ``x = k * c_l`` channels (c_l per
group), so :class:`LayerwiseModel` predicts a network at any k, measured or not, as the sum of its
layers. :meth:`LayerwiseModel.as_kbasis` hands that curve to the frequency models
(:mod:`governor.core.perf.model`) as a k-basis. Latency in ms; channels are counts.

Unmeasured group counts in a profile
------------------------------------
``governor profile --groups 1,8`` measures only some k. :func:`predict_unmeasured` then predicts the
others from what was measured: per mapping, the frequency models give the network's latency at the
mapping's top clocks for every measured k; :func:`fit_network` fits the layer-wise network to those
values, each layer l costing ``MACs_l(k) * q(x) / x`` with ``x`` its output channels at k and ``q``
a core (linear: ``q(x) = x``; step: whole tiles of w channels, ``q(x) = ceil(x / w) * w``), summed
and scaled, ``t(k) = d + h * sum_l ...`` (least squares; the core by leave-one-out error, ties to
the linear core, the widest tile). An unmeasured k* between measured levels lo < k* < hi (or beyond
them, from the two nearest) is the fraction ``phi = (t(k*) - t(lo)) / (t(hi) - t(lo))`` of the way
from lo to hi: every target (latency, power, rails, energy) at any clocks is then
``M(f, lo) + phi * (M(f, hi) - M(f, lo))`` from the frequency models M
(:class:`governor.core.perf.profile.GroupPrediction`). The uncertainty of phi is the spread of the
candidate cores still alive (leave-one-out error within 2x of the best; all of them while fewer than
three k are measured, when no held-out error exists) around the chosen one, plus the chosen core's
leave-one-out error, both in units of ``t(hi) - t(lo)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from governor.core.modelmeta import KLevel
from governor.core.perf.features import FloatArray, KBasis
from governor.core.perf.profile import GroupPrediction, ProfileModel

__all__ = [
    "BLACKTHORN_WIDTHS",
    "LayerAcrossK",
    "LayerFit",
    "LayerwiseModel",
    "NetworkFit",
    "fit_layer",
    "fit_network",
    "predict_levels",
    "predict_unmeasured",
    "sample_layer",
    "shapes_from_levels",
]

BLACKTHORN_WIDTHS: tuple[int, ...] = tuple(range(8, 513, 8))
_RATIO_START, _RATIO_END, _RATIO_ROUNDS = 20.0, 2.0, 16
_MIN_POINTS = 6


@dataclass(frozen=True)
class LayerFit:
    """One layer's latency (ms) vs channel count: step ``d + floor((x-1)/w) h`` or linear ``d + h x``."""

    core: Literal["step", "linear"]
    d: float
    h: float
    width: float = 0.0  # step only: channels per tile
    loo_error: float = 0.0  # leave-one-out RMS relative error of the fit

    def predict(self, x: FloatArray | Sequence[float]) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        if self.core == "linear":
            return self.d + self.h * x
        return self.d + np.floor((x - 1.0) / self.width) * self.h


def _design(core: str, width: float, x: FloatArray) -> FloatArray:
    slope = x if core == "linear" else np.floor((x - 1.0) / width)
    return np.column_stack([np.ones_like(x), slope])


def _loo(design: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    """Least squares and its leave-one-out RMS relative error (closed form via the hat matrix)."""
    coef = np.asarray(np.linalg.lstsq(design, y, rcond=None)[0], dtype=np.float64)
    if np.linalg.matrix_rank(design) < design.shape[1] or len(y) <= design.shape[1]:
        return coef, np.inf
    hat = np.einsum("ij,ji->i", design, np.linalg.pinv(design))
    resid = (design @ coef - y) / np.maximum(1.0 - hat, 1e-9)
    return coef, float(np.sqrt(np.mean((resid / y) ** 2)))


def _candidates(x: FloatArray, y: FloatArray, widths: Sequence[float]) -> list[LayerFit]:
    fits = []
    for core, width in [("linear", 0.0), *(("step", float(w)) for w in widths)]:
        coef, err = _loo(_design(core, width, x), y)
        fits.append(LayerFit(core, float(coef[0]), float(coef[1]), width, err))  # type: ignore[arg-type]
    return fits


def fit_layer(channels: Sequence[float], latency_ms: Sequence[float],
              widths: Sequence[float] = BLACKTHORN_WIDTHS) -> LayerFit:
    """The best core (and tile width) for one layer's measurements, by leave-one-out error."""
    x = np.asarray(channels, dtype=np.float64)
    y = np.asarray(latency_ms, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("need at least two (channels, latency) pairs of equal length")
    fits = _candidates(x, y, widths)
    # ties (several widths fit exactly) go to the linear core, then to the widest tile
    return min(fits, key=lambda f: (round(f.loo_error, 9), f.core != "linear", -f.width))


def _ratio(round_no: int) -> float:
    frac = min(round_no / _RATIO_ROUNDS, 1.0)
    return _RATIO_START + (_RATIO_END - _RATIO_START) * frac


def _next_x(alive: Sequence[LayerFit], xs: Sequence[int], lo: int, hi: int) -> int | None:
    grid = np.arange(lo, hi + 1, dtype=np.float64)
    todo = ~np.isin(grid, xs)
    if not todo.any():
        return None
    preds = np.stack([f.predict(grid) for f in alive])
    spread = preds.max(axis=0) - preds.min(axis=0)
    gaps = np.min(np.abs(grid[:, None] - np.asarray(xs, dtype=np.float64)[None, :]), axis=1)
    score = spread / max(float(spread.max()), 1e-12) + gaps / max(float(gaps.max()), 1.0)
    return int(grid[np.flatnonzero(todo)[np.argmax(score[todo])]])


def sample_layer(measure: Callable[[int], float], lo: int = 1, hi: int = 1024, max_points: int = 48,
                 widths: Sequence[float] = BLACKTHORN_WIDTHS) -> tuple[LayerFit, list[int], list[float]]:
    """Benchmark one layer at well-chosen channel counts in [lo, hi]; returns the fit and the data."""
    if hi - lo < 2:
        raise ValueError("the channel range must span at least three values")
    span = hi - lo + 1
    xs = sorted({lo + round(span * 63 / 1024), lo + round(span * 959 / 1024)})
    ys = [float(measure(x)) for x in xs]
    alive: list[LayerFit] = []
    while len(xs) < max_points:
        fits = _candidates(np.array(xs, dtype=np.float64), np.array(ys), widths)
        finite = [f.loo_error for f in fits if np.isfinite(f.loo_error)]
        best = min(finite) if finite else np.inf
        limit = max(best * _ratio(len(xs) - 2), 1e-6) if np.isfinite(best) else np.inf
        alive = [f for f in fits if f.loo_error <= limit] or fits
        if len(alive) == 1 and len(xs) >= _MIN_POINTS:
            break
        nxt = _next_x(alive, xs, lo, hi)
        if nxt is None:
            break
        xs.append(nxt)
        ys.append(float(measure(nxt)))
    return fit_layer(xs, ys, widths), xs, ys


@dataclass(frozen=True)
class LayerwiseModel:
    """A network as the sum of its layers; layer l runs ``k * channels_per_group[l]`` channels."""

    layers: tuple[LayerFit, ...]
    channels_per_group: tuple[int, ...]
    overhead_ms: float = 0.0

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.channels_per_group) or not self.layers:
            raise ValueError("one channels-per-group count per layer, and at least one layer")

    def predict_groups(self, groups: Sequence[int] | FloatArray) -> FloatArray:
        """Network latency (ms) at each active group count k."""
        k = np.asarray(groups, dtype=np.float64)
        total = np.full(k.shape, self.overhead_ms)
        for layer, channels in zip(self.layers, self.channels_per_group, strict=True):
            total = total + layer.predict(k * channels)
        return total

    def as_kbasis(self, kmax: int) -> KBasis:
        """The predicted network curve over k = 1..kmax as a k-basis for the frequency models."""
        curve = self.predict_groups(np.arange(1.0, kmax + 1.0))
        if np.any(curve <= 0):
            raise ValueError("the layer-wise curve must be positive to serve as a k-basis")
        return KBasis("curve", values=tuple(float(v) for v in curve), name="layerwise")


# --- a network's latency vs k from whole-network measurements at a few k -----------------------------

@dataclass(frozen=True)
class LayerAcrossK:
    """One weight layer at every k = 1..G: active output channels and MACs per sample."""

    out_channels: tuple[int, ...]
    macs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.out_channels) != len(self.macs) or not self.macs:
            raise ValueError("one output-channel count and one MAC count per k = 1..G")


def shapes_from_levels(levels: Sequence[KLevel]) -> tuple[LayerAcrossK, ...]:
    """Layer shapes from a model file's k levels (``ModelMeta.levels``, k = 1..G in order)."""
    if not levels or len({len(lv.layers) for lv in levels}) != 1:
        raise ValueError("every k level must list the same layers")
    return tuple(LayerAcrossK(tuple(lv.layers[i].out_channels for lv in levels),
                            tuple(float(lv.layers[i].macs) for lv in levels))
                 for i in range(len(levels[0].layers)))


def _work(shapes: Sequence[LayerAcrossK], core: str, width: float) -> FloatArray:
    """sum_l MACs_l(k) * q(x_l) / x_l at k = 1..G (MACs); q pads to whole tiles for the step core."""
    total = np.zeros(len(shapes[0].macs))
    for shape in shapes:
        x = np.asarray(shape.out_channels, dtype=np.float64)
        padded = x if core == "linear" else np.ceil(x / width) * width
        total += np.asarray(shape.macs, dtype=np.float64) * padded / x
    return total


@dataclass(frozen=True)
class NetworkFit:
    """Network latency (ms, at one set of clocks) vs k: ``d + h * work(k)``, ``curve`` at k = 1..G."""

    core: Literal["step", "linear"]
    width: float
    d: float
    h: float
    loo_error: float  # leave-one-out RMS relative error; inf with fewer than three k
    curve: tuple[float, ...]


def _network_candidates(shapes: Sequence[LayerAcrossK], ks: FloatArray, y: FloatArray,
                        widths: Sequence[float]) -> list[NetworkFit]:
    fits, seen = [], set()
    for core, width in [("linear", 0.0), *(("step", float(w)) for w in widths)]:
        work = _work(shapes, core, width)
        key = tuple(np.round(work / work.max(), 12))
        if key in seen:  # a tile wider than every layer pads them all alike: one candidate is enough
            continue
        seen.add(key)
        design = np.column_stack([np.ones(len(ks)), work[ks.astype(np.int64) - 1]])
        coef, err = _loo(design, y)
        curve = coef[0] + coef[1] * work
        fits.append(NetworkFit(core, width, float(coef[0]), float(coef[1]), err,  # type: ignore[arg-type]
                               tuple(float(v) for v in curve)))
    return fits


def fit_network(shapes: Sequence[LayerAcrossK], groups: Sequence[int], latency_ms: Sequence[float] | FloatArray,
                widths: Sequence[float] = BLACKTHORN_WIDTHS) -> tuple[NetworkFit, list[NetworkFit]]:
    """The best layer-wise network fit to latencies (ms) measured at ``groups``, and the candidates
    still alive (leave-one-out error within 2x of the best; all while that error is undefined)."""
    G = len(shapes[0].macs) if shapes else 0
    ks = np.asarray(groups, dtype=np.float64)
    y = np.asarray(latency_ms, dtype=np.float64)
    if len(ks) != len(y) or len(set(groups)) != len(ks) or len(ks) < 2:
        raise ValueError("need latencies at two or more distinct group counts")
    _check_groups(groups, G)
    fits = _network_candidates(shapes, ks, y, widths)
    best = min(fits, key=lambda f: (round(f.loo_error, 9), f.core != "linear", -f.width))
    alive = [f for f in fits if not np.isfinite(best.loo_error) or f.loo_error <= 2.0 * best.loo_error]
    return best, alive


def _check_groups(groups: Sequence[int], G: int) -> None:
    bad = sorted({int(k) for k in groups if not 1 <= int(k) <= G})
    if bad:
        raise ValueError(f"group counts {bad} are outside this model's 1..{G}")


def _anchors(k: int, measured: Sequence[int]) -> tuple[int, int]:
    below = [m for m in measured if m < k]
    above = [m for m in measured if m > k]
    if below and above:
        return max(below), min(above)
    side = sorted(measured, key=lambda m: abs(m - k))[:2]
    return min(side), max(side)


def _fraction(curve: Sequence[float], k: int, lo: int, hi: int) -> float:
    span = curve[hi - 1] - curve[lo - 1]
    return float((curve[k - 1] - curve[lo - 1]) / span) if span != 0 else float((k - lo) / (hi - lo))


def _place(best: NetworkFit, alive: Sequence[NetworkFit], k: int, measured: Sequence[int]) -> GroupPrediction:
    lo, hi = _anchors(k, measured)
    phi = _fraction(best.curve, k, lo, hi)
    others = np.array([_fraction(f.curve, k, lo, hi) for f in alive])
    loo = best.loo_error if np.isfinite(best.loo_error) else 0.0
    span = abs(best.curve[hi - 1] - best.curve[lo - 1]) or 1.0
    std = float(np.sqrt(np.mean((others - phi) ** 2) + (loo * best.curve[k - 1] / span) ** 2))
    return GroupPrediction(k, lo, hi, phi, std, best.core, best.width)


def predict_levels(shapes: Sequence[LayerAcrossK], measured: Sequence[int], latency_ms: Sequence[float],
                   groups: Sequence[int]) -> dict[int, tuple[float, float]]:
    """Latency (ms) mean and standard deviation at unmeasured ``groups`` from latencies measured at
    ``measured`` (one set of clocks), the way :func:`predict_unmeasured` places them."""
    _check_groups(groups, len(shapes[0].macs) if shapes else 0)
    best, alive = fit_network(shapes, measured, latency_ms)
    y = dict(zip(measured, latency_ms, strict=True))
    out = {}
    for k in groups:
        p = _place(best, alive, k, sorted(measured))
        out[k] = (y[p.lo] + p.fraction * (y[p.hi] - y[p.lo]), p.fraction_std * abs(y[p.hi] - y[p.lo]))
    return out


def predict_unmeasured(model: ProfileModel, shapes: Sequence[LayerAcrossK], groups: Sequence[int],
                       widths: Sequence[float] = BLACKTHORN_WIDTHS) -> ProfileModel:
    """``model`` extended to the unmeasured group counts ``groups`` (see the module doc).

    Raises ValueError naming the problem: a k outside 1..G (G = the shapes' levels), a k that was
    measured, fewer than two measured k, or no latency model for any mapping.
    """
    G = len(shapes[0].macs) if shapes else 0
    _check_groups(groups, G)
    _check_groups(model.groups, G)
    wanted = sorted({int(k) for k in groups})
    measured = sorted(model.groups)
    clash = sorted(set(wanted) & set(measured))
    if clash:
        raise ValueError(f"group counts {clash} were measured; only unmeasured ones are predicted")
    if len(measured) < 2:
        raise ValueError(f"predicting other group counts needs at least two measured ones, the profile has {measured}")
    top = np.array([[*(max(fs) for fs in model.opp_hz), float(k)] for k in measured])
    out: dict[str, dict[int, GroupPrediction]] = {}
    for mapping in model.mappings:
        if ("latency_ms", mapping) not in model.models:
            continue
        y = model.models[("latency_ms", mapping)].predict(top, noise=False)[0]
        if not np.all(np.isfinite(y) & (y > 0)):
            continue
        best, alive = fit_network(shapes, measured, y, widths)
        out[mapping] = {k: _place(best, alive, k, measured) for k in wanted}
    if not out:
        raise ValueError("no mapping has a latency model to predict other group counts from")
    return model.with_predicted(out)
