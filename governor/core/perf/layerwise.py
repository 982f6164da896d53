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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from governor.core.perf.features import FloatArray, KBasis

__all__ = ["BLACKTHORN_WIDTHS", "LayerFit", "LayerwiseModel", "fit_layer", "sample_layer"]

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
