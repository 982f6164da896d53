"""Workloads for the simulator, built from model metadata (layer shapes -> MACs and bytes).

A layer's DRAM traffic is counted as its weights plus, per sample, its input and output
activations: an upper bound that ignores cache reuse (the unit's ``efficiency`` absorbs the rest).
:func:`grouped_alexnet` builds the AlexNet-for-CIFAR-10 shape of the group-pruning paper (papers.md
§3) from the same cost formulas the model files use, for demos and tests without a model file.
"""

from __future__ import annotations

from typing import Literal

from governor.core.modelmeta import LayerCost, ModelMeta, layer_cost
from governor.core.physics import LayerWork, Workload

__all__ = ["grouped_alexnet", "workload_from_layers", "workload_from_meta"]


def _work(layer: LayerCost, batch: int) -> LayerWork:
    return LayerWork(macs=float(layer.macs * batch),
                     bytes=float(layer.weight_bytes + batch * (layer.input_bytes + layer.output_bytes)))


def workload_from_layers(name: str, layers_by_k: dict[int, list[LayerCost]], *, batch: int = 1,
                         overhead_ms: float = 0.2) -> Workload:
    """A workload from per-k layer costs (``governor.core.modelmeta.LayerCost``)."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return Workload(name, {k: tuple(_work(x, batch) for x in layers) for k, layers in layers_by_k.items()},
                    overhead_ms=overhead_ms)


def workload_from_meta(meta: ModelMeta, *, batch: int = 1, overhead_ms: float = 0.2) -> Workload:
    """The simulator's view of a model file: every k level's layers at ``batch`` samples."""
    return workload_from_layers(meta.arch, {lv.k: list(lv.layers) for lv in meta.levels}, batch=batch,
                                overhead_ms=overhead_ms)


# (name, kind, in channels, out channels, kernel, stride, padding, input size, pool after)
_ALEXNET_CIFAR: tuple[tuple[str, Literal["conv", "linear"], int, int, int, int, int, int, int], ...] = (
    ("conv1", "conv", 3, 64, 5, 1, 2, 32, 2),
    ("conv2", "conv", 64, 192, 5, 1, 2, 16, 2),
    ("conv3", "conv", 192, 384, 3, 1, 1, 8, 1),
    ("conv4", "conv", 384, 256, 3, 1, 1, 8, 1),
    ("conv5", "conv", 256, 256, 3, 1, 1, 8, 2),
    ("fc1", "linear", 256 * 4 * 4, 1024, 1, 1, 0, 1, 1),
    ("fc2", "linear", 1024, 512, 1, 1, 0, 1, 1),
)


def grouped_alexnet(groups: int = 4, *, batch: int = 1) -> Workload:
    """Group-pruned AlexNet for CIFAR-10 with ``groups`` groups: layers scale with the active k."""
    if groups < 1 or any(row[3] % groups for row in _ALEXNET_CIFAR):
        raise ValueError(f"groups must divide every layer width (64, 192, 256, 384, 512, 1024); got {groups}")
    by_k: dict[int, list[LayerCost]] = {}
    for k in range(1, groups + 1):
        layers = []
        for name, kind, c_in, c_out, ksz, stride, pad, hw, _pool in _ALEXNET_CIFAR:
            first = name == "conv1"
            active_in = c_in if first else c_in * k // groups
            layers.append(layer_cost(
                name, kind=kind, connectivity="dense" if first else "grouped", k=k,
                in_channels=active_in, out_channels=c_out * k // groups, kernel=(ksz, ksz), stride=stride,
                padding=pad, in_hw=(hw, hw), bias=True,
            ))
        layers.append(layer_cost("classifier", kind="linear", connectivity="dense", k=k,
                                 in_channels=512 * k // groups, out_channels=10, bias=True))
        by_k[k] = layers
    return workload_from_layers(f"alexnet-cifar10-g{groups}", by_k, batch=batch)
