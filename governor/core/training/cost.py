"""Training memory and step-time prediction from analytic features (perf4sight, extended).

Theory of operation
-------------------
A *training profile* is what ``governor profile MODEL --training`` measured: for every active group
count k the network's layer shapes, and for every (k, batch size) one row with the peak memory
increment of a training step (MB over the idle worker) and its step time (ms), or ``passed=False``
where it ran out of memory or hit the cap. The profile is the device's fingerprint; models are
refitted from it on load (fitting takes about a second), so no pickled estimator is ever stored and
nothing depends on the scikit-learn version that wrote it.

Prediction, per target (memory, latency):

* A **linear model** with non-negative coefficients and an intercept on a few physically meaningful
  feature sums (:data:`LINEAR_FEATURES`), fitted for relative error. It extrapolates, so it answers
  outside the profiled range, where trees cannot. The memory of the parameters themselves (weight,
  gradient, optimiser state: :data:`PARAM_STATE_BYTES` per parameter) is known and subtracted first.
* An **ExtraTrees** ensemble (300 trees, perf4sight's regressor) on all features. In the default
  ``hybrid`` method it learns the ratio of the measurement to the linear prediction: what the library
  does that a straight line in the counts misses (algorithm switches, cache effects). The ``trees``
  method is perf4sight's (trees on the raw target); ``linear`` uses no trees.

A query is *inside* the profiled range when every linear-model feature lies within the range seen
while fitting (5 % tolerance); outside, the linear model answers alone. Uncertainty (one standard
deviation) inside is the method's relative error on configurations left out while fitting, combined
with the spread of the per-tree predictions; outside it is the linear model's held-out error, grown
with the distance from the range.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from governor.core.training.features import FEATURE_NAMES, NetworkShape, network_features
from governor.core.widening import widening

if TYPE_CHECKING:  # scikit-learn is imported when a model is fitted: reading profiles stays light
    from sklearn.ensemble import ExtraTreesRegressor

__all__ = [
    "LINEAR_FEATURES",
    "METHODS",
    "PARAM_STATE_BYTES",
    "PROFILE_FORMAT",
    "Method",
    "PlanRow",
    "TrainingCostModel",
    "TrainingPrediction",
    "TrainingProfile",
    "TrainingProfileFileError",
    "TrainingRow",
    "TrainingSample",
    "feature_matrix",
    "parse_training_profile",
    "plan_training",
    "samples_from_profile",
]

PROFILE_FORMAT = "dnn-governor-training-profile"
Clock = Literal["wall", "cpu"]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class TrainingProfileFileError(ValueError):
    """The text is not a usable training profile; the message says why and what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TrainingRow(_Frozen):
    """One measured (k, batch) point. Memory in MB (increment over the idle worker), times in ms."""

    groups: int = Field(ge=1)
    batch: int = Field(ge=1)
    passed: bool
    memory_mb: float | None = None
    latency_ms: float | None = Field(default=None, gt=0)
    reason: str = ""  # why it did not pass (out of memory, cap, killed)
    memory_passes_mb: tuple[float, ...] = ()  # one per measurement pass
    latency_passes_ms: tuple[float, ...] = ()  # median step time of each pass
    idle_rss_mb: float | None = None  # the worker's resident set before the model was built
    contention: float | None = None  # share of the step's cores other processes took while timing, 0..1
    cpu_ms: float | None = None  # single-threaded runs: CPU time of the step (time it held a core), ms
    cpu_passes_ms: tuple[float, ...] = ()



class TrainingProfile(_Frozen):
    """Everything ``profile --training`` measured for one model on one device."""

    format: Literal["dnn-governor-training-profile"] = "dnn-governor-training-profile"
    format_version: Literal[1] = 1
    model: str  # the model file or architecture that was profiled
    device: str  # "cpu" or "cuda:N"
    host: str = ""  # processor / board description
    threads: int = Field(ge=1)
    optimizer: str = "sgd"
    input_shape: tuple[int, ...]
    memory_metric: str  # what memory_mb means on this device
    simulated: bool = False
    configs: Mapping[int, NetworkShape]  # active groups k -> the sub-network's shape
    rows: tuple[TrainingRow, ...]

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)


def parse_training_profile(text: str | bytes) -> TrainingProfile:
    """Validate a profile file's text; names the problem and how to get a good file."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingProfileFileError(f"training profile is not valid JSON ({exc}); re-run "
                                       "`governor profile MODEL --training`") from exc
    if not isinstance(raw, dict) or raw.get("format") != PROFILE_FORMAT:
        raise TrainingProfileFileError(f"not a training profile (lacks format={PROFILE_FORMAT!r}); "
                                       "produce one with `governor profile MODEL --training`")
    try:
        return TrainingProfile.model_validate(raw)
    except (ValidationError, ValueError) as exc:
        raise TrainingProfileFileError(f"training profile is invalid: {exc}") from exc


@dataclass(frozen=True)
class TrainingSample:
    """A passed measurement with the layers it ran: what the regressors learn from."""

    network: NetworkShape
    batch: int
    memory_mb: float
    latency_ms: float


def samples_from_profile(profile: TrainingProfile, groups: Sequence[int] | None = None,
                         clock: Clock = "wall") -> list[TrainingSample]:
    """The passed rows of ``profile`` (optionally only those whose k is in ``groups``).

    ``clock="cpu"`` takes the step's CPU time as its latency (profiles measured with one thread):
    the step time on a core of its own, which other processes on a shared host do not inflate.
    """
    chosen = [row for row in profile.rows if row.passed and (groups is None or row.groups in groups)]
    samples = []
    for row in chosen:
        latency = row.latency_ms if clock == "wall" else row.cpu_ms
        if row.memory_mb is not None and latency is not None:
            samples.append(TrainingSample(profile.configs[row.groups], row.batch, row.memory_mb, latency))
    return samples


# --- regressors ----------------------------------------------------------------------------------

Target = Literal["memory", "latency"]
Method = Literal["hybrid", "trees", "linear"]
METHODS: tuple[Method, ...] = ("hybrid", "trees", "linear")
_MEMORY: Target = "memory"
_LATENCY: Target = "latency"
# Physically motivated sums for the linear model. Memory (parameter state is subtracted exactly, see
# below): layer outputs and their gradients, for which the saved activations of the normalisation
# and activation layers after each convolution scale too, and the im2col workspace. Time: the
# optimiser's pass over every stored parameter, arithmetic, and the activation and im2col traffic
# (small grouped convolutions on CPUs are bound by the latter). A feature that is constant over the
# profile cannot be told from the intercept and is left out of that fit.
LINEAR_FEATURES: Mapping[Target, tuple[str, ...]] = {
    "memory": ("tensor-ofm", "gemm-i2c-fwd"),
    "latency": ("params", "gemm-ops-fwd", "tensor-ofm", "gemm-i2c-fwd"),
}
RANGE_TOLERANCE = 0.05
# float32 bytes held per stored parameter at the peak of a step: the weight, its gradient and the
# optimiser's state (SGD momentum: 1 buffer; Adam: 2). Known exactly, so subtracted before fitting:
# a profile of one architecture has a constant parameter count, which no regression could separate
# from the runtime's fixed cost.
PARAM_STATE_BYTES: Mapping[str, float] = {"sgd": 12.0, "adam": 16.0}
# The relative sd of a prediction for an architecture no profiled network has (memory, step time): the
# features carry the arithmetic over, not the cost per operation of another layer mix. From alexnet-cifar
# alone, the benchmark's resnet-small was off by 8 % in memory and 46 % in step time on this CPU (up to
# 2.6x slower than predicted); two profiled points of its own brought both to 8 %.
FOREIGN_REL_SD = {"memory": 0.25, "latency": 1.0}
MB = 1024.0 * 1024.0


@dataclass(frozen=True)
class TrainingPrediction:
    """Predicted peak memory increment (MB) and step time (ms), each with one standard deviation."""

    memory_mb: float
    memory_sd_mb: float
    latency_ms: float
    latency_sd_ms: float
    inside: bool  # every linear feature within the profiled range (else the linear model answered)
    architecture_profiled: bool = True  # some profiled network has this one's layers (widths aside)


@dataclass(frozen=True)
class _Linear:
    """``y = A @ coef + intercept`` over the chosen feature columns; coefficients are non-negative."""

    columns: tuple[int, ...]
    coef: FloatArray
    intercept: float
    floor: float  # predictions never go below this (a small fraction of the smallest measurement)

    def predict(self, X: FloatArray) -> FloatArray:
        return np.maximum(X[:, self.columns] @ self.coef + self.intercept, self.floor)


def _fit_linear(X: FloatArray, y: FloatArray, target: Target) -> _Linear:
    from sklearn.linear_model import LinearRegression

    columns = tuple(FEATURE_NAMES.index(name) for name in LINEAR_FEATURES[target])
    columns = tuple(c for c in columns if np.ptp(X[:, c]) > 0) or columns
    A = X[:, columns]
    scale = np.where(A.max(axis=0) > 0, A.max(axis=0), 1.0)
    # Weights 1/y^2 minimise relative error, the figure of merit.
    fit = LinearRegression(positive=True).fit(A / scale, y, sample_weight=1.0 / y**2)
    return _Linear(columns, fit.coef_ / scale, float(fit.intercept_), 0.01 * float(y.min()))


@dataclass(frozen=True)
class _TargetModel:
    """One target: the method in use, its linear model and trees, the profiled range, error levels."""

    method: Method
    linear: _Linear
    trees: ExtraTreesRegressor | None  # None for the linear method
    low: FloatArray
    high: FloatArray
    rel_sd_inside: float = 0.0  # held-out relative error (rms) of the method, a configuration left out
    rel_sd_outside: float = 0.0  # held-out relative error of the linear model, at least the above
    rel_sd_known: float | None = None  # the method's error on rows left out of configurations it still has

    def predict(self, X: FloatArray, known: npt.NDArray[np.bool_] | None = None,
                ) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_]]:
        """Mean, one standard deviation and whether each row is inside the profiled range. ``known``: the
        row's network configuration was profiled (another batch size of it), so its error is that of an
        interpolated point, not of a configuration never seen."""
        lin = self.linear.predict(X)
        inner = lin
        if self.trees is not None:
            # The trees' disagreement is not added to the sd: the held-out errors already hold it (added, it
            # counted twice, and 100 % of the benchmark's held-back memory errors fell inside 2 sd).
            inner = (lin if self.method == "hybrid" else 1.0) * self.trees.predict(X)
        A = X[:, self.linear.columns]
        inside = np.all((self.low * (1 - RANGE_TOLERANCE) <= A) & (self.high * (1 + RANGE_TOLERANCE) >= A), axis=1)
        excursion = np.max(np.maximum(A / self.high, self.low / np.maximum(A, 1e-12)) - 1, axis=1).clip(min=0)
        mean = np.where(inside, inner, lin)
        rel = np.full(len(X), self.rel_sd_inside)
        if known is not None and self.rel_sd_known is not None:
            rel = np.where(known, self.rel_sd_known, rel)
        sd = np.where(inside, rel * mean, self.rel_sd_outside * lin * (1 + excursion))
        return mean, sd, inside


def _fit_target(X: FloatArray, y: FloatArray, target: Target, method: Method, seed: int,
                n_estimators: int) -> _TargetModel:
    from sklearn.ensemble import ExtraTreesRegressor

    linear = _fit_linear(X, y, target)
    trees = None
    if method != "linear":
        trees = ExtraTreesRegressor(n_estimators=n_estimators, random_state=seed)
        trees.fit(X, y / linear.predict(X) if method == "hybrid" else y)
    A = X[:, linear.columns]
    return _TargetModel(method, linear, trees, A.min(axis=0), A.max(axis=0))


def _folds(configs: IntArray, most: int = 5) -> list[npt.NDArray[np.bool_]]:
    """Held-out masks: leave one network configuration out when there are 3+, else ``most`` row folds."""
    keys = np.unique(configs)
    if len(keys) >= 3:
        return [configs == key for key in keys]
    index = np.arange(len(configs))
    return [index % most == i for i in range(min(most, len(configs)))]


def _rms(values: list[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if values else 0.0


def _row_folds(configs: IntArray, most: int = 4) -> list[npt.NDArray[np.bool_]]:
    """Held-out masks that leave rows out while every configuration keeps at least two of its rows."""
    rank = np.zeros(len(configs), dtype=np.int64)
    for key in np.unique(configs):
        members = np.flatnonzero(configs == key)
        rank[members] = np.arange(len(members))
    sizes = np.array([np.sum(configs == c) for c in configs])
    folds = [(rank % most == i) & (sizes >= 3) for i in range(most)]
    return [f for f in folds if f.any()]


def _with_errors(model: _TargetModel, X: FloatArray, y: FloatArray, configs: IntArray, target: Target,
                 seed: int, n_estimators: int) -> _TargetModel:
    """Attach the relative errors of the method, and of its linear model, on configurations left out,
    and the method's error on rows left out of configurations it keeps (an interpolated batch size).

    Each error is scored where it applies: the method's (``rel_sd_inside``, ``rel_sd_known``) on the
    held-out rows its fold still finds inside the profiled range, the linear model's on the rest. A
    fold that leaves out the largest configuration extrapolates; charging that error to points
    inside the range made the self-estimate several times the real error (100 % inside 2 sd)."""
    method: list[float] = []
    outside: list[float] = []
    linear: list[float] = []
    for held in _folds(configs):
        if held.all():
            continue
        fold = _fit_target(X[~held], y[~held], target, model.method, seed, n_estimators)
        mean, _sd, inside = fold.predict(X[held])
        rel = (mean - y[held]) / y[held]
        method += list(rel[inside])
        outside += list(rel[~inside])
        linear += list((fold.linear.predict(X[held]) - y[held]) / y[held])
    known: list[float] = []
    for held in _row_folds(configs) if len(np.unique(configs)) >= 3 else []:
        fold = _fit_target(X[~held], y[~held], target, model.method, seed, n_estimators)
        mean, _sd, inside = fold.predict(X[held])
        known += list(((mean - y[held]) / y[held])[inside])
    inside_sd = _predictive(method) if method else _predictive(outside)
    return replace(model, rel_sd_inside=inside_sd,
                   rel_sd_outside=max(inside_sd, _predictive(linear), _predictive(outside)),
                   rel_sd_known=_predictive(known) if known else None)


def _predictive(errors: list[float]) -> float:
    """The sd to predict with from ``errors``, a handful of held-out relative errors: their rms, widened by
    Student's t so that 2 sd covers 95 % of new errors although the rms itself rests on few of them (6 to
    12 here: x 1.31 for 6, x 1.15 for 10). Before, the rms alone put 81-88 % of the benchmark's held-back
    memory errors inside 2 sd; and a kept configuration's error was capped at a left-out one's, though its
    own folds measured it larger (a profiled network at a new batch size missed by 9-10 %)."""
    if not errors:
        return 0.0
    return _rms(errors) * widening(len(errors) - 1)


class TrainingCostModel:
    """Predicts a training step's memory and time for any network shape and batch size on one device."""

    MIN_SAMPLES = 3

    def __init__(self, memory: _TargetModel, latency: _TargetModel, param_bytes: float,
                 networks: frozenset[NetworkShape] = frozenset(),
                 batches: Mapping[tuple[tuple[object, ...], ...], frozenset[int]] | None = None) -> None:
        self._memory, self._latency, self._param_bytes = memory, latency, param_bytes
        self._networks = networks  # the profiled configurations
        self._layouts = frozenset(_layout(n) for n in networks)  # ... and their architectures
        self._batches = dict(batches or {})  # architecture -> the batch sizes profiled of it

    @property
    def held_out_error(self) -> dict[str, float]:
        """Relative error (rms) on configurations left out while fitting, per target; 0 if not estimated."""
        return {"memory": self._memory.rel_sd_inside, "latency": self._latency.rel_sd_inside}

    @classmethod
    def fit(cls, samples: Sequence[TrainingSample], *, optimizer: str = "sgd", method: Method = "hybrid",
            seed: int = 0, n_estimators: int = 300, estimate_errors: bool = True) -> TrainingCostModel:
        """Fit both targets. ``estimate_errors`` refits per held-out configuration for the uncertainty;
        ``optimizer`` (the profile's) sets the known parameter-state memory (:data:`PARAM_STATE_BYTES`)."""
        if optimizer not in PARAM_STATE_BYTES:
            raise ValueError(f"optimizer {optimizer!r} is not one of {sorted(PARAM_STATE_BYTES)}")
        if len(samples) < cls.MIN_SAMPLES:
            raise ValueError(f"{len(samples)} passed measurements are too few to fit (need {cls.MIN_SAMPLES}); "
                             "profile more batch sizes or group counts")
        if method not in METHODS:
            raise ValueError(f"method {method!r} is not one of {', '.join(METHODS)}")
        X = feature_matrix([(s.network, s.batch) for s in samples])
        networks = list(dict.fromkeys(s.network for s in samples))
        configs = np.array([networks.index(s.network) for s in samples])
        param_bytes = PARAM_STATE_BYTES[optimizer]
        memory = np.array([s.memory_mb - s.network.params * param_bytes / MB for s in samples])
        latency = np.array([s.latency_ms for s in samples])
        fitted = []
        for target, y in ((_MEMORY, memory), (_LATENCY, latency)):
            model = _fit_target(X, y, target, method, seed, n_estimators)
            fitted.append(_with_errors(model, X, y, configs, target, seed, n_estimators) if estimate_errors else model)
        batches: dict[tuple[tuple[object, ...], ...], frozenset[int]] = {}
        for sample in samples:
            batches[_layout(sample.network)] = batches.get(_layout(sample.network), frozenset()) | {sample.batch}
        return cls(fitted[0], fitted[1], param_bytes, frozenset(networks), batches)

    def predict_many(self, queries: Sequence[tuple[NetworkShape, int]]) -> list[TrainingPrediction]:
        """Predictions for (network, batch size) pairs, in order."""
        X = feature_matrix(queries)
        known = np.array([network in self._networks for network, _ in queries])
        mem, mem_sd, mem_in = self._memory.predict(X, known)
        lat, lat_sd, lat_in = self._latency.predict(X, known)
        mem = mem + X[:, FEATURE_NAMES.index("params")] * self._param_bytes / MB
        # An architecture the profile never saw, or a batch beyond the few profiled of its architecture: the folds
        # say nothing about it (its batch scaling is another network's), so its error is the prior's. With two
        # batch sizes of a second architecture profiled, its batch-128 memory was off by 15-29 % against an sd
        # of 5-6 %: 79 % of the benchmark's errors inside 2 sd, rms error/sd 2.3.
        foreign = np.array([bool(self._layouts) and _layout(network) not in self._layouts for network, _ in queries])
        thin = np.array([_beyond(batch, self._batches.get(_layout(network), frozenset()))
                         for network, batch in queries])
        prior = foreign | thin
        mem_sd = np.where(prior, np.maximum(mem_sd, FOREIGN_REL_SD["memory"] * mem), mem_sd)
        lat_sd = np.where(prior, np.maximum(lat_sd, FOREIGN_REL_SD["latency"] * lat), lat_sd)
        return [
            TrainingPrediction(float(m), float(ms), float(t), float(ts), bool(a and b and not p), not bool(f))
            for m, ms, t, ts, a, b, p, f in zip(mem, mem_sd, lat, lat_sd, mem_in, lat_in, prior, foreign, strict=True)
        ]

    def predict(self, network: NetworkShape, batch: int) -> TrainingPrediction:
        return self.predict_many([(network, batch)])[0]


THIN_BATCHES = 3  # an architecture profiled at fewer batch sizes has shown no batch scaling of its own


def _beyond(batch: int, profiled: frozenset[int]) -> bool:
    """``batch`` lies outside the batch sizes profiled of its architecture, and those are too few to have
    measured how that architecture scales with the batch."""
    return bool(profiled) and len(profiled) < THIN_BATCHES and not (
        min(profiled) * (1 - RANGE_TOLERANCE) <= batch <= max(profiled) * (1 + RANGE_TOLERANCE))


def _layout(network: NetworkShape) -> tuple[tuple[object, ...], ...]:
    """The architecture without its widths: what every channel-group count of one network shares."""
    return tuple((layer.kind, layer.in_hw, layer.kernel, layer.stride, layer.padding) for layer in network.layers)


def feature_matrix(queries: Sequence[tuple[NetworkShape, int]]) -> FloatArray:
    """One :func:`network_features` row per (network, batch size)."""
    return np.stack([network_features(network, batch) for network, batch in queries])


Verdict = Literal["yes", "maybe", "no"]


@dataclass(frozen=True)
class PlanRow:
    """One (k, batch) candidate: its prediction and whether it fits the budgets."""

    groups: int
    batch: int
    prediction: TrainingPrediction
    memory_mb: float  # the figure compared with the memory budget (prediction + any fixed offset)
    fits: Verdict  # yes: mean + sigmas*sd within budget; maybe: only the mean is; no: not even the mean


def _verdict(mean: float, sd: float, budget: float | None, sigmas: float) -> Verdict:
    if budget is None or mean + sigmas * sd <= budget:
        return "yes"
    return "maybe" if mean <= budget else "no"


def plan_training(model: TrainingCostModel, networks: Mapping[int, NetworkShape], batch_sizes: Sequence[int],
                  memory_budget_mb: float, time_budget_ms: float | None = None, *, sigmas: float = 2.0,
                  memory_offset_mb: float = 0.0) -> list[PlanRow]:
    """Every (k, batch) with its verdict; ``memory_offset_mb`` is added to each memory prediction."""
    queries = [(k, b) for k in sorted(networks) for b in sorted(set(batch_sizes))]
    predictions = model.predict_many([(networks[k], b) for k, b in queries])
    rows = []
    for (k, b), p in zip(queries, predictions, strict=True):
        verdicts = {_verdict(p.memory_mb + memory_offset_mb, p.memory_sd_mb, memory_budget_mb, sigmas),
                    _verdict(p.latency_ms, p.latency_sd_ms, time_budget_ms, sigmas)}
        fits: Verdict = "no" if "no" in verdicts else "maybe" if "maybe" in verdicts else "yes"
        rows.append(PlanRow(k, b, p, p.memory_mb + memory_offset_mb, fits))
    return rows
