"""One model file = zip of ``meta.json`` (governor.core.modelmeta) + one ``.npy`` per stored tensor.

Tensors are written with numpy's .npy format and read with ``allow_pickle=False``, so loading a model
never unpickles anything. The zip CRC of each entry catches bit rot and truncation; every error names
the file and says what to do. Writes go to a temporary file that replaces the target atomically.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from governor.core.modelmeta import (
    GRAPH_ARCH,
    META_ENTRY,
    TENSOR_PREFIX,
    KLevel,
    ModelFileError,
    ModelMeta,
    TrainingInfo,
    read_model_meta,
)
from governor.runtime.data import Split
from governor.runtime.graphnet import GraphNet
from governor.runtime.nets import DynamicNet, build_net, scaled_widths
from governor.runtime.training import TrainConfig, TrainedModel

__all__ = ["LoadedModel", "describe", "describe_converted", "levels", "load_model", "save_model", "stored_bytes"]


@dataclass(frozen=True)
class LoadedModel:
    net: DynamicNet
    meta: ModelMeta


def _params_at(net: DynamicNet, k: int) -> int:
    if isinstance(net, GraphNet):
        return net.params_at(k)
    grouped = {g.name: g.offsets[k] for g in net.grouped_tensors()}
    return sum(grouped.get(name, p.numel()) for name, p in net.named_parameters())


def _state_bytes_at(net: DynamicNet, k: int) -> int:
    """Bytes a stand-alone k-group model would store: the k-group prefix of every grouped tensor."""
    if isinstance(net, GraphNet):
        return net.state_bytes_at(k)
    grouped = {g.name: g.offsets[k] for g in net.grouped_tensors()}
    return sum(grouped.get(name, t.numel()) * t.element_size() for name, t in net.state_dict().items())


def levels(net: DynamicNet, accuracies: Sequence[float | None] | None = None) -> tuple[KLevel, ...]:
    """Costs of every k-group sub-network (traced), with the given accuracies (None: not measured)."""
    accuracies = accuracies or [None] * net.groups
    out = []
    for k in range(1, net.groups + 1):
        layers = tuple(net.layer_costs(k))
        out.append(KLevel(k=k, accuracy=accuracies[k - 1], macs=sum(layer.macs for layer in layers),
                          params=_params_at(net, k), state_bytes=_state_bytes_at(net, k), layers=layers))
    return tuple(out)


def stored_bytes(net: DynamicNet) -> int:
    """Bytes of every tensor the dynamic model stores (all groups)."""
    return sum(t.numel() * t.element_size() for t in net.state_dict().values())


def describe(trained: TrainedModel, config: TrainConfig, split: Split) -> ModelMeta:
    """The metadata of a freshly trained model: costs traced per k, accuracies as measured."""
    net = trained.net
    widths, fc_widths = scaled_widths(config.arch, config.width, config.groups)
    mean, std = split.channel_stats()
    info = TrainingInfo(
        dataset=split.train.name, train_samples=len(split.train.y), val_samples=len(split.val.y),
        epochs_per_stage=config.epochs, batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, seed=config.seed, seconds=trained.seconds,
    )
    return ModelMeta(
        arch=config.arch, widths=widths, fc_widths=fc_widths, groups=net.groups, connectivity=config.connectivity,
        input_shape=split.train.input_shape, input_mean=mean, input_std=std, classes=split.train.classes,
        total_params=sum(p.numel() for p in net.parameters()),
        total_state_bytes=stored_bytes(net), training=info, levels=levels(net, trained.accuracies),
    )


def describe_converted(net: GraphNet, *, classes: Sequence[str], info: TrainingInfo,
                       accuracies: Sequence[float | None] | None = None) -> ModelMeta:
    """The metadata of a converted network (``governor convert``), its costs traced per k."""
    return ModelMeta(
        format_version=2, arch=GRAPH_ARCH, widths=(), groups=net.groups,
        connectivity=net.connectivity,  # type: ignore[arg-type]
        input_shape=net.input_shape,  # type: ignore[arg-type]
        input_mean=tuple(float(v) for v in net.input_mean.flatten()),
        input_std=tuple(float(v) for v in net.input_std.flatten()), classes=tuple(classes),
        total_params=sum(p.numel() for p in net.parameters()), total_state_bytes=stored_bytes(net),
        training=info, levels=levels(net, accuracies), graph=net.spec,
    )


def save_model(path: Path, net: DynamicNet, meta: ModelMeta) -> None:
    """Write weights and metadata to ``path`` atomically (recommended suffix: .dgm)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr(META_ENTRY, meta.model_dump_json(indent=1))
            for name, tensor in net.state_dict().items():
                buffer = io.BytesIO()
                np.save(buffer, tensor.detach().cpu().numpy(), allow_pickle=False)
                archive.writestr(f"{TENSOR_PREFIX}{name}.npy", buffer.getvalue())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_model(path: Path, *, device: str = "cpu") -> LoadedModel:
    """Read a model file, rebuild its network in eval mode at k = G; errors say which file and why."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            meta = read_model_meta(f)
            f.seek(0)
            net = _build(meta)
            _load_tensors(f, net)
    except FileNotFoundError as exc:
        raise ModelFileError(f"model file {path} does not exist; train one with `governor train`") from exc
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    except (zipfile.BadZipFile, ValueError, OSError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: weights are corrupt or do not match the metadata ({exc}); retrain it") from exc
    return LoadedModel(net.to(device).eval(), meta)


def _build(meta: ModelMeta) -> DynamicNet:
    try:
        if meta.graph is not None:
            return GraphNet(meta.graph, groups=meta.groups, input_shape=meta.input_shape, mean=meta.input_mean,
                            std=meta.input_std, connectivity=meta.connectivity)
        return build_net(
            meta.arch, groups=meta.groups, connectivity=meta.connectivity, input_shape=meta.input_shape,
            classes=len(meta.classes), widths=meta.widths, fc_widths=meta.fc_widths, mean=meta.input_mean,
            std=meta.input_std,
        )
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"cannot rebuild the network from its metadata ({exc}); retrain it") from exc


def _load_tensors(stream: BinaryIO, net: DynamicNet) -> None:
    expected = net.state_dict()
    with zipfile.ZipFile(stream) as archive:
        stored = {n[len(TENSOR_PREFIX) : -4]: n for n in archive.namelist() if n.startswith(TENSOR_PREFIX)}
        missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        if missing or extra:
            raise ModelFileError(f"tensors do not match the architecture (missing {missing[:3]}, extra {extra[:3]})")
        loaded = {}
        for name, target in expected.items():
            array = np.load(io.BytesIO(archive.read(stored[name])), allow_pickle=False)
            if tuple(array.shape) != tuple(target.shape) or array.dtype.itemsize != target.element_size():
                raise ModelFileError(f"tensor {name} has shape {array.shape}, expected {tuple(target.shape)}")
            loaded[name] = torch.from_numpy(array)
    net.load_state_dict(loaded)
