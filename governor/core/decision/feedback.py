"""Learning from what really happened: residual correction, safety margin and contention.

Theory of operation
-------------------
Profiles are measured on an idle board; at run time the board is not idle and the models are not
perfect. Two corrections turn a nominal prediction into the one the optimiser trusts:

1. **Contention** (:func:`contention_multiplier`), from the live load readings: other work on the
   unit time-shares it. On a CPU cluster of ``n`` cores where others keep ``u * n`` cores busy, our
   ``t`` threads get at most ``n - u*n`` cores' worth of time, so latency grows by
   ``max(1, (t + u*n) / n)`` when ``t`` threads would no longer fit. On a GPU (one time-sliced
   engine) a co-runner holding share ``u`` leaves ``1 - u``: latency grows by ``1 / (1 - u)``.
   The share is clock-aware (:func:`row_contention`): a co-runner seen taking ``u`` at clock
   ``f_obs`` does fixed work, so at a lower clock ``f`` it takes ``u * f_obs / f`` (a slow GPU
   is eaten by the same video decoder), up to its round-robin slice on an accelerator (half the
   engine next to our context, or the largest share seen). At a higher clock an accelerator's co-runner (submitted
   kernels: fixed work) shrinks to ``u * f_obs / f`` as well; a CPU's is assumed to keep ``u`` (a
   busy loop does not shrink). The optimism is safe on accelerators because a run that proves it
   wrong is read back as the co-runner's share at that clock (the scheduler's ``_infer_share``);
   assuming it kept ``u`` instead sent every request after one crushed low-clock GPU run to the CPU,
   where none met its deadline, and the GPU was never tried again.
   Threads in lockstep are another matter. When our threads no longer fit beside others' work
   (:func:`oversubscribed`), one of them shares a core, and every barrier waits for it: on the 2-core
   host, two threads next to one busy process took 20-100x their prediction, not the 1.5x above.
   No formula gives that (it depends on the kernel's time slice and the barriers per pass), so the
   scheduler learns it per CPU unit from such runs, and ``row_contention`` applies it to the
   oversubscribed rows only (``lockstep``).
2. **Residuals** (:class:`ResidualTracker`): per (unit, threads, groups) an exponentially weighted
   mean of ``log(measured / predicted)`` *after* the contention correction; its ``exp`` multiplies
   later predictions. The safety margin is a high quantile of the recent relative errors left
   after that correction, so it grows when the model is erratic and shrinks when it is right. It is
   kept per mapping (unit, threads) once a mapping has :data:`_OWN_MARGIN_MIN` outcomes of its own, and
   taken from all outcomes before that: tails belong to mappings. Two threads on a CPU with no spare
   core wait at every barrier for a thread that shares its core, and one such run took 30-70x its
   prediction. With one margin for all, that run tripled every prediction of the one-thread runs
   beside it for the next 64 requests, and made budgets they met look infeasible.

Energy is corrected with the same multiplier: a longer run at the same power costs proportionally
more, which errs on the safe side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["ResidualTracker", "contention_multiplier", "oversubscribed", "row_contention", "sorted_quantile"]

_MAX_SHARE = 0.95  # a unit reported 100 % busy by others still gives us a slice
# An accelerator time-slices contexts round-robin (GPU runlists): a co-runner that would want more of a
# slow clock than its fair slice gets only the slice. One other context is assumed (half the engine); a
# larger share seen (from a load file, or from our own slowed run) is kept as the bound instead.
_RR_SLICE = 0.5
_OWN_MARGIN_MIN = 8  # outcomes a mapping needs before its margin is its own rather than everyone's


def contention_multiplier(
    groups: Sequence[tuple[str, int, int]],
    others_util: Mapping[str, float],
    unit_kind: Mapping[str, str],
    unit_cores: Mapping[str, int],
) -> npt.NDArray[np.float64]:
    """Latency multiplier per (unit, threads, groups) from the busy fraction others put on each unit, at the
    clock it was observed at (:func:`row_contention` with no clock information)."""
    units = tuple(dict.fromkeys(unit for unit, _t, _k in groups))
    unit_of = np.array([units.index(unit) for unit, _t, _k in groups], dtype=np.int64)
    threads = np.array([t for _u, t, _k in groups], dtype=np.float64)
    return row_contention(units, threads, np.zeros(len(groups)), others_util, {}, unit_kind, unit_cores, unit_of)


def oversubscribed(threads: Any, share: Any, cores: int) -> Any:
    """Whether ``threads`` of ours no longer fit beside others keeping ``share`` of ``cores`` busy (scalars
    or arrays, elementwise): others need more than half a core beyond what our threads leave (a few % of
    noise is no co-runner)."""
    return threads + share * cores > cores + 0.5


def row_contention(
    units: Sequence[str],
    threads: npt.NDArray[np.float64],
    row_hz: npt.NDArray[np.float64],
    others_util: Mapping[str, float],
    others_hz: Mapping[str, float],
    unit_kind: Mapping[str, str],
    unit_cores: Mapping[str, int],
    unit_of: npt.NDArray[np.int64],
    lockstep: Mapping[str, float] | None = None,
) -> npt.NDArray[np.float64]:
    """Latency multiplier per table row, clock-aware (see the module doc).

    ``units[unit_of[i]]`` is row i's unit, ``threads[i]`` its thread count and ``row_hz[i]`` the clock
    it sets on that unit's domain (0 when it sets none: then the observed share is used as it is);
    ``others_hz[unit]`` is the clock the unit ran at when ``others_util[unit]`` was observed;
    ``lockstep[unit]`` multiplies the CPU rows whose threads are :func:`oversubscribed`."""
    out = np.ones(unit_of.size)
    for j, unit in enumerate(units):
        u = min(max(float(others_util.get(unit, 0.0)), 0.0), _MAX_SHARE)
        if u == 0.0:
            continue
        rows = unit_of == j
        seen_hz = float(others_hz.get(unit, 0.0))
        hz = row_hz[rows]
        ratio = np.where((hz > 0) & (seen_hz > 0), seen_hz / np.where(hz > 0, hz, 1.0), 1.0)
        cpu = unit_kind.get(unit) == "cpu"
        if cpu:
            share = np.minimum(u * np.maximum(ratio, 1.0), _MAX_SHARE)
        else:  # round-robin next to our context: one co-runner context gets at most half, or what we saw
            share = np.minimum(u * ratio, min(max(_RR_SLICE, u), _MAX_SHARE))
        if cpu:
            n = max(int(unit_cores.get(unit, 1)), 1)
            t = threads[rows]
            out[rows] = np.maximum(1.0, (t + share * n) / n)
            penalty = (lockstep or {}).get(unit, 1.0)
            if penalty > 1.0:
                out[rows] *= np.where(oversubscribed(t, share, n), penalty, 1.0)
        else:
            out[rows] = 1.0 / (1.0 - share)
    return out


@dataclass
class ResidualTracker:
    """Online multiplicative correction per group and a learned safety margin (relative)."""

    n_groups: int
    alpha: float = 0.2
    window: int = 64
    quantile: float = 0.99
    min_margin: float = 0.02
    max_margin: float = 2.0
    # Group -> mapping index; each mapping's errors also form a window of their own (None: one mapping).
    mapping_of: Sequence[int] | None = None
    _log_bias: npt.NDArray[np.float64] = field(init=False, repr=False)
    _seen: npt.NDArray[np.int64] = field(init=False, repr=False)
    _errors: deque[float] = field(init=False, repr=False)
    _own: list[deque[float]] = field(init=False, repr=False)
    _mapping: npt.NDArray[np.int64] = field(init=False, repr=False)
    _cached: tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float64]] | None = field(
        init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        mapping = np.zeros(self.n_groups, dtype=np.int64) if self.mapping_of is None else np.asarray(
            self.mapping_of, dtype=np.int64)
        if mapping.shape != (self.n_groups,) or (mapping.size and mapping.min() < 0):
            raise ValueError(f"mapping_of needs one mapping index >= 0 per group ({self.n_groups})")
        self._mapping = mapping
        self.reset()

    def reset(self) -> None:
        """Forget everything learned (e.g. after a new profile is loaded)."""
        self._log_bias = np.zeros(self.n_groups)
        self._seen = np.zeros(self.n_groups, dtype=np.int64)
        self._errors = deque(maxlen=self.window)
        self._own = [deque(maxlen=self.window) for _ in range(int(self._mapping.max(initial=0)) + 1)]
        self._cached = None  # decisions outnumber outcomes

    def update(self, group: int, predicted_ms: float, measured_ms: float) -> None:
        """Feed one outcome. ``predicted_ms`` is the contention-corrected prediction before residuals."""
        if predicted_ms <= 0 or measured_ms <= 0 or not np.isfinite(predicted_ms + measured_ms):
            return
        error = measured_ms / (predicted_ms * float(np.exp(self._log_bias[group]))) - 1.0
        self._errors.append(error)
        self._own[int(self._mapping[group])].append(error)
        residual = float(np.log(measured_ms / predicted_ms))
        # The first sample of a group replaces the prior; later ones are averaged in.
        a = 1.0 if self._seen[group] == 0 else self.alpha
        self._log_bias[group] += a * (residual - self._log_bias[group])
        self._seen[group] += 1
        self._cached = None

    def multiplier(self) -> npt.NDArray[np.float64]:
        return self._state()[0]

    def margin(self) -> float:
        """Relative safety margin over all outcomes: the ``quantile`` of recent under-predictions, clipped."""
        return self._state()[1]

    def margins(self) -> npt.NDArray[np.float64]:
        """Relative safety margin per group: its mapping's own once it has :data:`_OWN_MARGIN_MIN`
        outcomes, else :meth:`margin`."""
        return self._state()[2]

    def _state(self) -> tuple[npt.NDArray[np.float64], float, npt.NDArray[np.float64]]:
        if self._cached is None:
            overall = self._clipped(self._errors) if self._errors else self.max_margin / 2  # nothing yet: careful
            per_mapping = np.array([self._clipped(own) if len(own) >= _OWN_MARGIN_MIN else overall
                                    for own in self._own])
            self._cached = (np.exp(self._log_bias), overall, per_mapping[self._mapping])
        return self._cached

    def _clipped(self, errors: deque[float]) -> float:
        return float(min(max(sorted_quantile(sorted(errors), self.quantile), self.min_margin), self.max_margin))

    def seen(self, group: int) -> int:
        return int(self._seen[group])


def sorted_quantile(ordered: Sequence[float], q: float) -> float:
    """``np.quantile``'s default (linear) on an already sorted sequence; after every run of an infer
    request the margin is recomputed, and numpy's call overhead on 64 values is ~10x this."""
    h = (len(ordered) - 1) * q
    lo = int(h)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo]))
