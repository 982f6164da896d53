"""Metadata of a dynamic (group-pruned) model file, readable without torch.

Theory of operation: a model file is a zip container. Its first entry, ``meta.json``, describes the
network (architecture, G channel groups, connectivity, input shape, classes), the validation accuracy
measured for each number of active groups k, and, for every k, the shape and cost of every weight
layer of the k-group sub-network. The other entries, ``tensors/<name>.npy``, hold the weights; only
``governor.runtime`` reads those. The simulator, the profiler and the daemon read the costs here:
MACs and bytes are per sample (batch 1); multiply by the batch size. Weights are float32.

MACs of one layer at k active groups (og, ig = output and input channels per group, kh·kw kernel,
oh·ow output size):
  dense   (first layer; every group reads the whole image): k·og · C_in · kh·kw · oh·ow
  grouped (block-diagonal: group j reads input group j):    k · og·ig · kh·kw · oh·ow
  nested  (group j reads input groups <= j):                 k(k+1)/2 · og·ig · kh·kw · oh·ow

This module does no I/O: callers hand it the file's bytes or an open binary stream.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any, BinaryIO, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from governor.core.modelgraph import GraphSpec, unknown_ops

__all__ = [
    "FLOAT_BYTES",
    "FORMAT_VERSION",
    "GRAPH_ARCH",
    "IMAGENET",
    "META_ENTRY",
    "MODEL_FORMAT",
    "TENSOR_PREFIX",
    "KLevel",
    "LayerCost",
    "ModelFileError",
    "ModelMeta",
    "TrainingInfo",
    "conv_out_hw",
    "layer_cost",
    "parse_model_meta",
    "read_model_meta",
]

MODEL_FORMAT: Final = "dnn-governor-model"
FORMAT_VERSION: Final = 2  # the newest this governor reads; version 1 files (no graph) read too
GRAPH_ARCH: Final = "graph"  # arch of a converted network, whose layers are in ``ModelMeta.graph``
META_ENTRY = "meta.json"
TENSOR_PREFIX = "tensors/"
FLOAT_BYTES = 4

LayerKind = Literal["conv", "linear"]
LayerConnectivity = Literal["dense", "grouped", "nested"]

# (mean, std) per RGB channel of torchvision's ImageNet weights, which take RGB scaled to 0..1
# (`governor convert --normalize imagenet`)
IMAGENET: tuple[tuple[float, ...], tuple[float, ...]] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ModelFileError(ValueError):
    """The bytes are not a usable model file; the message says why and what to do."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LayerCost(_Frozen):
    """One weight layer of the k-group sub-network. Channels are the active ones; sizes in pixels."""

    name: str
    kind: LayerKind
    connectivity: LayerConnectivity
    groups: int = Field(ge=1)  # active groups k
    conv_groups: int = Field(default=1, ge=1)  # the convolution's own groups (depthwise: its channels)
    in_channels: int = Field(ge=1)
    out_channels: int = Field(ge=1)
    kernel: tuple[int, int]
    stride: int = Field(ge=1)
    padding: int = Field(ge=0)
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    macs: int = Field(ge=0)
    weight_bytes: int = Field(ge=0)  # weights + bias read by this layer
    input_bytes: int = Field(ge=0)  # input activation, per sample
    output_bytes: int = Field(ge=0)  # output activation, per sample


class KLevel(_Frozen):
    """The sub-network made of the first k groups."""

    k: int = Field(ge=1)
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)  # measured on the validation split
    macs: int = Field(ge=0)
    params: int = Field(ge=0)  # learnable parameters in use (weights, biases, batch-norm affine)
    state_bytes: int = Field(ge=0)  # bytes a stand-alone k-group model would store (params + BN stats)
    layers: tuple[LayerCost, ...]

    @property
    def weight_bytes(self) -> int:
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def activation_bytes(self) -> int:
        """Bytes of layer outputs written per sample."""
        return sum(layer.output_bytes for layer in self.layers)


class TrainingInfo(_Frozen):
    """How the weights were produced (incremental training, one stage per group)."""

    dataset: str
    train_samples: int = Field(ge=0)
    val_samples: int = Field(ge=0)
    epochs_per_stage: int = Field(ge=0)
    batch_size: int = Field(ge=1)
    lr: float
    weight_decay: float
    seed: int
    seconds: float = Field(ge=0.0)  # measured wall time of training


class ModelMeta(_Frozen):
    """Everything a model file says about itself besides the weight values."""

    format: Literal["dnn-governor-model"] = MODEL_FORMAT
    format_version: Literal[1, 2] = 1  # 2: a converted network (``graph`` set)
    arch: str
    widths: tuple[int, ...]  # convolution widths (all groups), architecture-specific order
    fc_widths: tuple[int, ...] = ()  # hidden fully connected widths (all groups)
    groups: int = Field(ge=1)  # G
    connectivity: Literal["grouped", "nested", "slimmable"]
    input_shape: tuple[int, int, int]  # (channels, height, width) of one sample
    input_mean: tuple[float, ...]  # per input channel, applied inside the network
    input_std: tuple[float, ...]
    classes: tuple[str, ...]
    total_params: int = Field(ge=0)
    total_state_bytes: int = Field(ge=0)  # bytes of every stored tensor of the dynamic model
    training: TrainingInfo
    levels: tuple[KLevel, ...]
    graph: GraphSpec | None = None  # the converted network's ops (arch "graph"), see core.modelgraph

    @model_validator(mode="after")
    def _consistent(self) -> ModelMeta:
        if (self.graph is not None) != (self.arch == GRAPH_ARCH) or (self.graph is not None) != (
                self.format_version == 2):
            raise ValueError(f"arch {GRAPH_ARCH!r}, a graph and format_version 2 go together")
        if self.connectivity == "slimmable" and self.graph is None:
            raise ValueError("slimmable connectivity is for converted networks (with a graph)")
        unknown = unknown_ops(self.graph) if self.graph is not None else []
        if unknown:
            raise ValueError(f"the graph uses ops this governor does not have ({', '.join(unknown[:3])}); "
                             "upgrade dnn-governor")
        if [lv.k for lv in self.levels] != list(range(1, self.groups + 1)):
            raise ValueError(f"levels must list k = 1..{self.groups} in order")
        bad = [w for w in (*self.widths, *self.fc_widths) if w % self.groups]
        if bad:
            raise ValueError(f"widths {bad} are not divisible by groups={self.groups}")
        channels = self.input_shape[0]
        if len(self.input_mean) != channels or len(self.input_std) != channels:
            raise ValueError(f"input_mean/input_std need one value per input channel ({channels})")
        if len(self.classes) < 2:
            raise ValueError("a classifier needs at least 2 classes")
        return self

    def level(self, k: int) -> KLevel:
        if not 1 <= k <= self.groups:
            raise ValueError(f"k={k} is out of range: this model has groups 1..{self.groups}")
        return self.levels[k - 1]

    def accuracy(self, k: int) -> float | None:
        return self.level(k).accuracy

    def accuracy_rank(self, k: int) -> float:
        """What the optimiser compares for k: the measured accuracy, or where the file has none (a
        converted model before `governor train --from`) k/G, so "max_accuracy" prefers more groups. A
        rank, never reported as an accuracy (replies say null) nor held against a floor (refused)."""
        if self.accuracies_known:
            return float(self.level(k).accuracy or 0.0)
        return k / self.groups

    @property
    def accuracies_known(self) -> bool:
        """Whether every k has a measured validation accuracy (a converted file has none until fine-tuned)."""
        return all(level.accuracy is not None for level in self.levels)

    def macs(self, k: int) -> int:
        return self.level(k).macs

    @property
    def separate_models_state_bytes(self) -> int:
        """Bytes needed to store G stand-alone models, one per k (what the dynamic model replaces)."""
        return sum(lv.state_bytes for lv in self.levels)


def conv_out_hw(in_hw: tuple[int, int], kernel: tuple[int, int], stride: int, padding: int) -> tuple[int, int]:
    """Output height and width of a convolution (floor mode), in pixels."""
    h, w = ((n + 2 * padding - kk) // stride + 1 for n, kk in zip(in_hw, kernel, strict=True))
    if h < 1 or w < 1:
        raise ValueError(f"input {in_hw} is too small for kernel {kernel} stride {stride} padding {padding}")
    return (h, w)


def layer_cost(
    name: str,
    *,
    kind: LayerKind,
    connectivity: LayerConnectivity,
    k: int,
    in_channels: int,
    out_channels: int,
    kernel: tuple[int, int] = (1, 1),
    stride: int = 1,
    padding: int = 0,
    in_hw: tuple[int, int] = (1, 1),
    bias: bool = False,
    conv_groups: int = 1,
    out_hw: tuple[int, int] | None = None,
) -> LayerCost:
    """Shape and cost of a layer at k active groups; channel counts are the active ones (all k groups).

    ``out_hw`` (pixels), where the layer's stride, padding or dilation differ per axis (Inception's 1x7
    convolutions pad (0, 3)): the output size it really has; ``stride`` and ``padding`` then only label it."""
    out_hw = out_hw or conv_out_hw(in_hw, kernel, stride, padding)
    taps = kernel[0] * kernel[1]
    if connectivity == "dense":
        weights = out_channels * (in_channels // conv_groups) * taps
    elif connectivity == "grouped":
        weights = out_channels * (in_channels // k) * taps
    else:
        weights = (out_channels // k) * (in_channels // k) * taps * k * (k + 1) // 2
    return LayerCost(
        name=name, kind=kind, connectivity=connectivity, groups=k, conv_groups=conv_groups,
        in_channels=in_channels, out_channels=out_channels, kernel=kernel, stride=stride,
        padding=padding, in_hw=in_hw, out_hw=out_hw,
        macs=weights * out_hw[0] * out_hw[1],
        weight_bytes=(weights + (out_channels if bias else 0)) * FLOAT_BYTES,
        input_bytes=in_channels * in_hw[0] * in_hw[1] * FLOAT_BYTES,
        output_bytes=out_channels * out_hw[0] * out_hw[1] * FLOAT_BYTES,
    )


def parse_model_meta(text: str | bytes) -> ModelMeta:
    """Validate ``meta.json``; a wrong format or version gets its own message before field errors."""
    try:
        raw: Any = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"model metadata is not valid JSON ({exc}); the file is corrupt: retrain it") from exc
    if not isinstance(raw, dict) or raw.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"not a {MODEL_FORMAT} file (metadata lacks format={MODEL_FORMAT!r})")
    version = raw.get("format_version")
    if version not in (1, FORMAT_VERSION) or isinstance(version, bool):
        hint = "upgrade dnn-governor" if isinstance(version, int) and version > FORMAT_VERSION else "retrain it"
        raise ModelFileError(
            f"model format version {version!r} is not supported (this governor reads versions 1 to "
            f"{FORMAT_VERSION}); {hint}" + ("" if hint.startswith("upgrade") else " with `governor train`")
        )
    try:
        return ModelMeta.model_validate(raw)
    except ValidationError as exc:
        raise ModelFileError(f"model metadata is invalid: {exc}") from exc


def read_model_meta(source: bytes | BinaryIO) -> ModelMeta:
    """Read the metadata from a model file's bytes or an open, seekable binary stream."""
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        with zipfile.ZipFile(stream) as archive:
            if META_ENTRY not in archive.namelist():
                raise ModelFileError(f"not a {MODEL_FORMAT} file (no {META_ENTRY} inside)")
            text = archive.read(META_ENTRY)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"not a {MODEL_FORMAT} file or truncated/corrupt ({exc}); retrain it") from exc
    return parse_model_meta(text)
