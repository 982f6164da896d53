"""The network an evaluation runs: what the simulator needs (a workload) and what the daemon needs (metadata).

Three sources:

* ``bundled``: the daemon's digits model (trained on first use, needs torch), accuracies measured;
* a model file path: its metadata (no torch), accuracies as the file records them;
* ``alexnet`` or ``alexnet:G``: the group-pruning paper's AlexNet for CIFAR-10
  (:func:`governor.sim.grouped_alexnet`). No trained file exists here, so its per-k accuracies are
  taken from ``accuracy_from`` (a model file with the same G) when given, else the
  :data:`ASSUMED_ALEXNET_ACCURACY` values, which are illustrative and marked ``assumed`` in every
  report. Traces state accuracy floors as sub-network levels (``"G"``, ``"G-1"``), so the assumed
  numbers change the reported accuracy only, never a decision.

Evaluation never needs the network's outputs, so the simulated backend runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from governor.core.modelmeta import KLevel, ModelFileError, ModelMeta, TrainingInfo, read_model_meta
from governor.core.physics import Workload
from governor.sim import grouped_alexnet, workload_from_meta

__all__ = ["ASSUMED_ALEXNET_ACCURACY", "EvalModel", "ModelError", "resolve_model"]

# Illustrative top-1 on CIFAR-10 for k = 1..4 of 4 groups; the paper's per-k figures were not retrievable.
ASSUMED_ALEXNET_ACCURACY = (0.70, 0.76, 0.79, 0.81)


class ModelError(ValueError):
    """The model cannot be used; the message says what to pass instead."""


@dataclass(frozen=True)
class EvalModel:
    name: str
    meta: ModelMeta
    workload: Workload
    accuracy_source: str  # "measured (<file>)" or "assumed (...)"


def resolve_model(spec: str, *, bundled_dir: Path, accuracy_from: Path | None = None) -> EvalModel:
    """``spec`` is ``bundled``, ``alexnet[:G]`` or a model file path."""
    if spec == "bundled":
        from governor.runtime.bundled import ensure_default_model

        path = ensure_default_model(bundled_dir)
        return _from_file(path, path.stem)
    if spec == "alexnet" or spec.startswith("alexnet:"):
        return _alexnet(_groups(spec), accuracy_from)
    path = Path(spec)
    if not path.is_file():
        raise ModelError(f"model {spec!r} is not a file; pass a model file, 'bundled' or 'alexnet[:G]'")
    return _from_file(path, path.stem[:64] or "model")


def _read_meta(path: Path) -> ModelMeta:
    try:
        with path.open("rb") as f:
            return read_model_meta(f)
    except (OSError, ModelFileError) as exc:
        raise ModelError(f"cannot use model {path}: {exc}") from exc


def _from_file(path: Path, name: str) -> EvalModel:
    meta = _read_meta(path)
    known = all(lv.accuracy is not None for lv in meta.levels)
    source = f"measured ({path.name})" if known else f"unknown ({path.name} records no accuracy)"
    return EvalModel(name, meta, workload_from_meta(meta), source)


def _groups(spec: str) -> int:
    _, _, text = spec.partition(":")
    try:
        groups = int(text or 4)
    except ValueError:
        raise ModelError(f"model {spec!r}: write alexnet or alexnet:G with G an integer (1, 2, 4, 8...)") from None
    if groups < 1:
        raise ModelError(f"model {spec!r}: G must be at least 1")
    return groups


def _alexnet(groups: int, accuracy_from: Path | None) -> EvalModel:
    try:
        workload = grouped_alexnet(groups)
    except ValueError as exc:
        raise ModelError(f"alexnet:{groups}: {exc}") from exc
    if accuracy_from is not None:
        other = _read_meta(accuracy_from)
        if other.groups != groups or any(lv.accuracy is None for lv in other.levels):
            raise ModelError(f"{accuracy_from} has G={other.groups} and accuracies "
                             f"{[lv.accuracy for lv in other.levels]}; it needs G={groups} with every accuracy")
        accuracy = tuple(float(lv.accuracy or 0.0) for lv in other.levels)
        source = f"taken from {accuracy_from.name}"
    else:
        accuracy = _assumed(groups)
        source = "assumed (illustrative values, not measured and not from the paper)"
    return EvalModel(f"alexnet-cifar10-g{groups}", _alexnet_meta(groups, workload, accuracy), workload, source)


def _assumed(groups: int) -> tuple[float, ...]:
    if groups == len(ASSUMED_ALEXNET_ACCURACY):
        return ASSUMED_ALEXNET_ACCURACY
    lo, hi = ASSUMED_ALEXNET_ACCURACY[0], ASSUMED_ALEXNET_ACCURACY[-1]
    return tuple(round(lo + (hi - lo) * (k - 1) / max(groups - 1, 1), 4) for k in range(1, groups + 1))


def _alexnet_meta(groups: int, workload: Workload, accuracy: tuple[float, ...]) -> ModelMeta:
    """Metadata for the daemon: input shape, classes, per-k accuracy and MACs (the layers live in the workload)."""
    levels = tuple(KLevel(k=k, accuracy=accuracy[k - 1], macs=int(workload.totals(k).macs), params=0, state_bytes=0,
                          layers=()) for k in range(1, groups + 1))
    training = TrainingInfo(dataset="none: untrained simulator workload", train_samples=0, val_samples=0,
                            epochs_per_stage=0, batch_size=1, lr=0.0, weight_decay=0.0, seed=0, seconds=0.0)
    return ModelMeta(arch="alexnet-cifar10", widths=(64, 192, 384, 256, 256), fc_widths=(1024, 512), groups=groups,
                     connectivity="grouped", input_shape=(3, 32, 32), input_mean=(0.0,) * 3, input_std=(1.0,) * 3,
                     classes=tuple(f"class{i}" for i in range(10)), total_params=0, total_state_bytes=0,
                     training=training, levels=levels)
