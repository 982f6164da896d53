"""Feature maps of the performance models: operating points -> regression columns.

Theory of operation
-------------------
An operating point of one mapping is a grid row ``[f_1 .. f_D (Hz), k]``. Frequencies are normalised
by the domain's top frequency (``g = f / f_max``, in (0, 1]) so coefficients are comparable across
boards. A model *candidate* is a form plus the basis its coefficients use along the group axis k:

- ``roofline``  ``t = T0(k) + sum_d A_d(k) / g_d``: compute time scales with the executing unit's
  clock, memory time with the EMC clock, dispatch overhead with the host CPU clock, and a fixed part
  scales with nothing. Coefficients are non-negative (fitted by NNLS).
- ``saturated`` ``t = T0(k) + (sum_d (A_d(k) / g_d)^p)^(1/p)``: the same terms overlapping; p = 1 is
  ``roofline`` and p -> inf the roofline max (compute and memory fully hidden behind each other).
- ``layered``   ``t = T0(k) + (sum_d (A_d(k) / g_d)^p)^(1/p) + (sum_d (C_d(k) / g_d)^p)^(1/p)``: two
  classes of layers, each overlapping its compute and memory time, with different balances (a
  network's convolutions are compute-bound where its fully connected layers and depthwise ones wait
  on memory). One p-norm of the whole network's times bends at one corner; the sum of per-layer ones
  bends gradually, which one norm misses by up to 1 % near the corner. As many coefficients as
  ``saturated``.
- ``poly``      ``P = c + sum_d sum_e a_de g_d^e (+ sum_{i<j} b_ij g_i g_j)``: dynamic power
  ``C V^2 f`` with V roughly linear in f gives f, f^2, f^3 terms per domain (f^6, f^8 for the steep
  top of a table whose voltage climbs fast; 1/f for the rise some boards show at the slowest DRAM
  clock); the pair products model one clock changing another unit's utilisation (a CPU stalled on
  slow DRAM switches less); knots ``(g - t)_+^2`` follow a voltage floor that ends at a knee.
- ``logpoly``   ``log y = c + sum_d (a_d L_d + b_d L_d^2) (+ pairs)``, ``L = log g``: a smooth,
  data-driven fallback that the cross-validation may prefer.

Each coefficient depends on k through a :class:`KBasis` (the columns are the Kronecker product of the
form's columns and the basis's): constant; linear; Blackthorn's step ``floor((k c - 1) / w)`` (tile
quantisation, w channels per tile, c channels per group); a hybrid of both; one level per k
(categorical, only when every k was measured); or a curve given from outside (MACs(k), bytes(k), a
layer-wise model's network prediction). Everything is vectorised over rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

__all__ = ["FORMS", "MEMORY_WORDS", "Axes", "CandidateSpec", "KBasis", "kron_columns", "memory_column",
           "stall_columns"]

MEMORY_WORDS = ("emc", "dram", "ddr", "mem")  # a domain whose name holds one of these clocks the memory

FloatArray = npt.NDArray[np.float64]
Form = Literal["roofline", "saturated", "layered", "poly", "logpoly"]
KKind = Literal["const", "linear", "step", "hybrid", "onehot", "curve"]
FORMS: tuple[str, ...] = ("roofline", "saturated", "layered", "poly", "logpoly")


@dataclass(frozen=True)
class Axes:
    """The coordinates of one model: domain names, their top frequencies (Hz) and the largest k.

    ``live`` marks the domains the model uses (empty: all). A domain held at one clock in every
    measurement of a mapping (an idle accelerator pinned low) carries no information; a term for
    it would only duplicate the constant, so the model leaves it out.
    """

    domains: tuple[str, ...]
    fmax_hz: tuple[float, ...]
    kmax: int = 1
    live: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.domains) != len(self.fmax_hz):
            raise ValueError(f"{len(self.domains)} domains but {len(self.fmax_hz)} top frequencies")
        if any(f <= 0 for f in self.fmax_hz) or self.kmax < 1:
            raise ValueError("top frequencies must be positive and kmax >= 1")
        if self.live and len(self.live) != len(self.domains):
            raise ValueError(f"{len(self.domains)} domains but {len(self.live)} live flags")

    @property
    def used(self) -> tuple[int, ...]:
        """Grid columns of the live domains."""
        return tuple(j for j in range(len(self.domains)) if not self.live or self.live[j])

    def normalise(self, grid: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Split grid rows ``[f_1..f_D (Hz), k]`` into g = f / f_max of the live domains and k (n)."""
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 2 or grid.shape[1] != len(self.domains) + 1:
            raise ValueError(f"grid must have {len(self.domains) + 1} columns ({', '.join(self.domains)}, k)")
        if np.any(grid[:, :-1] <= 0):
            raise ValueError("frequencies must be positive")
        used = list(self.used)
        return grid[:, used] / np.asarray(self.fmax_hz)[used], grid[:, -1]

    def to_dict(self) -> dict[str, Any]:
        return {"domains": list(self.domains), "fmax_hz": list(self.fmax_hz), "kmax": self.kmax,
                "live": list(self.live)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Axes:
        return cls(tuple(data["domains"]), tuple(float(f) for f in data["fmax_hz"]), int(data["kmax"]),
                   tuple(bool(v) for v in data.get("live", ())))


@dataclass(frozen=True)
class KBasis:
    """How a coefficient varies with the active group count k (columns are >= 0)."""

    kind: KKind = "const"
    width: float = 0.0  # step/hybrid: channels per tile
    channels: float = 1.0  # step/hybrid: channels per group
    values: tuple[float, ...] = ()  # onehot: the k levels; curve: value for k = 1, 2, ...
    name: str = ""  # curve: what the curve is (e.g. "macs")

    @property
    def label(self) -> str:
        if self.kind in ("step", "hybrid"):
            return f"{self.kind}(w={self.width:g},c={self.channels:g})"
        return f"curve({self.name})" if self.kind == "curve" else self.kind

    def _step(self, k: FloatArray) -> FloatArray:
        return np.floor((k * self.channels - 1.0) / self.width)

    def columns(self, k: FloatArray, kmax: int) -> FloatArray:
        """Basis columns for group counts k (n x nb); scaled so each column is at most about 1."""
        k = np.asarray(k, dtype=np.float64)
        one = np.ones_like(k)
        if self.kind == "const":
            return one[:, None]
        if self.kind == "linear":
            return np.stack([one, k / kmax], axis=1)
        if self.kind == "onehot":
            return np.stack([(k == level).astype(np.float64) for level in self.values], axis=1)
        if self.kind == "curve":
            table = np.asarray(self.values, dtype=np.float64)
            idx = np.clip(np.rint(k).astype(np.int64) - 1, 0, len(table) - 1)
            return np.stack([one, table[idx] / table.max()], axis=1)
        top = max(float(self._step(np.array([float(kmax)]))[0]), 1.0)
        step = np.maximum(self._step(k), 0.0) / top
        if self.kind == "step":
            return np.stack([one, step], axis=1)
        return np.stack([one, k / kmax, step], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "width": self.width, "channels": self.channels,
                "values": list(self.values), "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KBasis:
        return cls(data["kind"], float(data["width"]), float(data["channels"]),
                   tuple(float(v) for v in data["values"]), str(data["name"]))


def memory_column(axes: Axes) -> int:
    """The live column of ``axes``'s memory clock (its name holds a :data:`MEMORY_WORDS` word), or -1."""
    for column, j in enumerate(axes.used):
        if any(word in axes.domains[j].lower() for word in MEMORY_WORDS):
            return column
    return -1


def kron_columns(base: FloatArray, kcols: FloatArray) -> FloatArray:
    """Row-wise Kronecker product: every base column times every k-basis column (n x nf*nb, also for n = 0)."""
    # the width is spelled out: reshape cannot infer it (-1) from an empty product
    return (base[:, :, None] * kcols[:, None, :]).reshape(base.shape[0], base.shape[1] * kcols.shape[1])


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate model: a form, its per-domain terms and the k-basis of its coefficients."""

    form: Form
    kbasis: KBasis = field(default_factory=KBasis)
    powers: tuple[float, ...] = ()  # poly: exponents of g per domain
    pairs: int = 0  # poly/logpoly: 1 adds g_i g_j (L_i L_j) for every two domains; 2 also g_i^2 g_j
    knots: tuple[float, ...] = ()  # poly: (g - knot)_+^2 per domain: a voltage knee in V(f)^2 f
    couple: float = 0.0  # poly: beta of the stall coupling with the memory clock (0: none); see stall_columns
    memory: int = -1  # poly: the live column of the memory clock the coupling uses

    @property
    def label(self) -> str:
        terms = f"[{','.join(f'{p:g}' for p in self.powers)}]" if self.powers else ""
        knots = f"+knots[{','.join(f'{t:g}' for t in self.knots)}]" if self.knots else ""
        couple = f"+stall[{self.couple:g}]" if self.couple else ""
        return f"{self.form}{terms}{knots}{'+pairs' * self.pairs}{couple}/{self.kbasis.label}"

    def _poly(self, g: FloatArray) -> list[FloatArray]:
        d = g.shape[1]
        cols = [g[:, j] ** p for j in range(d) for p in self.powers]
        cols += [np.maximum(g[:, j] - t, 0.0) ** 2 for j in range(d) for t in self.knots]
        if self.pairs >= 1:
            cols += [g[:, i] * g[:, j] for i in range(d) for j in range(i + 1, d)]
        if self.pairs >= 2:
            cols += [g[:, i] ** 2 * g[:, j] for i in range(d) for j in range(d) if i != j]
        if self.couple and 0 <= self.memory < d:
            cols += stall_columns(g, self.memory, self.couple)
        return cols

    def base_columns(self, g: FloatArray) -> FloatArray:
        """The form's columns before the k-basis product (linear forms; saturated uses roofline's)."""
        n, d = g.shape
        cols: list[FloatArray] = [np.ones(n)]
        if self.form in ("roofline", "saturated", "layered"):
            cols += [1.0 / g[:, j] for j in range(d)]
        elif self.form == "poly":
            cols += self._poly(g)
        else:
            logs = np.log(g)
            cols += [logs[:, j] ** p for j in range(d) for p in (1, 2)]
            if self.pairs:
                cols += [logs[:, i] * logs[:, j] for i in range(d) for j in range(i + 1, d)]
        return np.stack(cols, axis=1)

    def columns(self, g: FloatArray, k: FloatArray, kmax: int) -> FloatArray:
        return kron_columns(self.base_columns(g), self.kbasis.columns(k, kmax))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"form": self.form, "kbasis": self.kbasis.to_dict(), "powers": list(self.powers),
                               "pairs": self.pairs, "knots": list(self.knots)}
        if self.couple:  # written only when used: profiles of earlier versions stay byte for byte the same
            out.update(couple=self.couple, memory=self.memory)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateSpec:
        if data["form"] not in FORMS:
            raise ValueError(f"unknown model form {data['form']!r}; known: {', '.join(FORMS)}")
        return cls(data["form"], KBasis.from_dict(data["kbasis"]), tuple(float(p) for p in data["powers"]),
                   int(data["pairs"]), tuple(float(t) for t in data.get("knots", ())),
                   float(data.get("couple", 0.0)), int(data.get("memory", -1)))


def stall_columns(g: FloatArray, memory: int, beta: float) -> list[FloatArray]:
    """Power columns of a unit whose work stalls on the memory clock (a busy GPU on DRAM).

    A run at normalised clocks g_d (its unit) and g_m (memory) spends ``1/g_d`` computing and ``beta/g_m``
    waiting on memory (``beta``: memory time over compute time at the top clocks), so it stalls a
    fraction ``s = beta g_d / (g_m + beta g_d)``. The unit switches less while stalled (``g_d s``,
    ``g_d^3 s``: its dynamic power's f and V^2 f shapes times s), and DRAM moves bytes at the rate the
    run progresses, ``g_d g_m / (g_m + beta g_d)``, over its bandwidth ``g_m``: activity ``s / beta``,
    whose dynamic power is ``g_m s`` and ``g_m^3 s``. ``g_m s`` is left out: it equals
    ``beta (g_d - g_d s)``, already two columns. None of them is a product of one-clock terms, so the
    plain polynomial's pairs only approximate them. One ``beta`` per candidate; the data choose it."""
    cols: list[FloatArray] = []
    gm = g[:, memory]
    for j in range(g.shape[1]):
        if j == memory:
            continue
        s = beta * g[:, j] / (gm + beta * g[:, j])
        cols += [g[:, j] * s, g[:, j] ** 3 * s, gm**3 * s]
    return cols
