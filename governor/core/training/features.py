"""Analytic training-step features of a network, after perf4sight (Rajagopal & Bouganis, 2021).

Theory of operation
-------------------
A training step (forward, loss, backward, optimiser step) of a CNN spends its memory and time in
its convolution and fully connected layers. perf4sight does not model the library's choice of
algorithm; instead it counts, for every layer and for every candidate algorithm a library might
pick (im2col + GEMM, FFT, Winograd F(4,3) and F(3,2)), the tensor sizes, the workspace buffers and
the operation counts of the forward, backward-data and backward-weight passes at the given batch
size. The network's feature vector is the element-wise SUM of its layers' vectors; a regressor
(:mod:`governor.core.training.cost`) then learns which of these the device's memory and time follow.

Notation (perf4sight's): ``ic``/``oc`` input/output channels, ``effIc = ic / groups`` the input
channels one output channel reads, ``k`` the kernel size, ``ip``/``op`` the input/output size,
``bs`` the batch size. Square sizes generalise to rectangles: ``ip^2 -> ih*iw``,
``ceil(ip/m)^2 -> ceil(ih/m)*ceil(iw/m)``, ``ip(1+ip) -> ih(1+iw)``, ``log2(ip) -> log2(ih*iw)/2``.
Unlike perf4sight (convolutions only) a fully connected layer counts too, as a 1x1 convolution
on a 1x1 map: it holds most of the parameters of small CIFAR networks. ``groups`` is a float so
that layers whose output channels read different numbers of inputs (nested group connectivity)
keep their exact weight count. The counts are element counts and operation counts, unit-free.

Two network-level features are added to perf4sight's sums: ``batch`` (so trees can split on it
directly) and ``params``, the parameter elements the model *stores*. A dynamic network running k of
G groups still holds, differentiates and keeps optimiser state for all G groups' weights, which the
per-layer counts of the k-group sub-network cannot see.

Pure: shapes in, numbers out (numpy only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from governor.core.modelmeta import LayerCost, ModelMeta

__all__ = [
    "FEATURE_NAMES",
    "LayerShape",
    "NetworkShape",
    "layer_features",
    "network_features",
    "network_from_costs",
    "network_from_meta",
]

FloatArray = npt.NDArray[np.float64]
WINOGRAD_TILES = ((4, 3), (3, 2))  # F(m, r): output tile m, filter tile r


@dataclass(frozen=True)
class LayerShape:
    """A convolution or fully connected layer as one sample sees it (sizes in pixels)."""

    kind: str  # "conv" or "linear"
    in_channels: int
    out_channels: int
    in_hw: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    groups: float = 1.0  # in_channels / input channels read per output channel

    def __post_init__(self) -> None:
        if self.kind not in ("conv", "linear"):
            raise ValueError(f"layer kind {self.kind!r} is not 'conv' or 'linear'")
        if min(self.in_channels, self.out_channels, *self.in_hw, *self.kernel, self.stride) < 1:
            raise ValueError(f"layer {self} has a non-positive size")
        if self.groups <= 0 or self.groups > self.in_channels:
            raise ValueError(f"groups={self.groups} must lie in (0, in_channels={self.in_channels}]")
        if min(self.out_hw) < 1:
            raise ValueError(f"input {self.in_hw} is too small for kernel {self.kernel} stride {self.stride}")

    @property
    def out_hw(self) -> tuple[int, int]:
        """Output size, floor mode: ``1 + floor((ip + 2 pad - k) / stride)``."""
        return (
            1 + (self.in_hw[0] + 2 * self.padding - self.kernel[0]) // self.stride,
            1 + (self.in_hw[1] + 2 * self.padding - self.kernel[1]) // self.stride,
        )

    @property
    def weights(self) -> float:
        """Weight elements (bias excluded): ``oc * effIc * k^2``."""
        return self.out_channels * (self.in_channels / self.groups) * self.kernel[0] * self.kernel[1]


@dataclass(frozen=True)
class NetworkShape:
    """What one sample passes through, and the parameter elements the model stores (all groups)."""

    layers: tuple[LayerShape, ...]
    params: int

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("the network has no convolution or fully connected layer to describe")
        if self.params < 0:
            raise ValueError(f"params={self.params} must not be negative")


def _tiles(hw: tuple[int, int], m: int) -> int:
    return math.ceil(hw[0] / m) * math.ceil(hw[1] / m)


def _log2_side(hw: tuple[int, int]) -> float:
    return 0.5 * math.log2(hw[0] * hw[1])


def _with_sums(named: list[tuple[str, float]], sums: Sequence[tuple[str, Sequence[int]]]) -> list[tuple[str, float]]:
    """Append each named sum of the listed entries (indices into ``named``)."""
    return named + [(name, sum(named[i][1] for i in parts)) for name, parts in sums]


def _tensor_and_gemm(s: LayerShape, bs: int) -> list[tuple[str, float]]:
    ic, oc, eff, k2 = s.in_channels, s.out_channels, s.in_channels / s.groups, s.kernel[0] * s.kernel[1]
    ip2, op2 = s.in_hw[0] * s.in_hw[1], s.out_hw[0] * s.out_hw[1]
    tensors = [
        ("tensor-weights", s.weights),
        ("tensor-weight-grad", bs * s.weights),
        ("tensor-ifm", 2 * bs * ic * ip2),  # input and its gradient
        ("tensor-ofm", 2 * bs * oc * op2),  # output and its gradient
    ]
    im2col = [
        ("gemm-i2c-idx-fwd", bs * op2),
        ("gemm-i2c-fwd", bs * op2 * k2 * ic),
        ("gemm-i2c-idx-bwd-x", bs * ip2),
        ("gemm-i2c-bwd-x", bs * ip2 * k2 * ic),
        ("gemm-i2c-bwd-w", bs * op2 * k2 * eff),
    ]
    im2col = _with_sums(im2col, [("gemm-i2c-sum", (1, 3, 4))])
    im2col.append(("gemm-i2c-idx-sum", 2 * im2col[0][1] + im2col[2][1]))
    fwd_ops, bwd_ops = bs * oc * op2 * k2 * eff, bs * ic * ip2 * k2 * oc
    ops = [("gemm-ops-fwd", fwd_ops), ("gemm-ops-bwd", bwd_ops), ("gemm-ops-sum", 2 * fwd_ops + bwd_ops)]
    return _with_sums(tensors, [("tensor-sum", (0, 1, 2, 3))]) + im2col + ops


def _fft(s: LayerShape, bs: int) -> list[tuple[str, float]]:
    ic, oc, eff = s.in_channels, s.out_channels, s.in_channels / s.groups
    (ih, iw), (oh, ow) = s.in_hw, s.out_hw
    buffers = [
        ("fft-weights-fwd", ih * (1 + iw) * oc * eff),
        ("fft-ifm-fwd", ih * (1 + iw) * bs * ic),
        ("fft-ofm-bwd-w", ih * (1 + iw) * bs * oc),
        ("fft-weights-bwd-x", oh * (1 + ow) * oc * eff),
        ("fft-ofm-bwd-x", oh * (1 + ow) * bs * oc),
    ]
    # The backward-weight pass transforms the input again: fft-ifm-fwd is counted twice in the total.
    buffers = _with_sums(buffers, [("fft-sum-fwd", (0, 1)), ("fft-sum-bwd-x", (3, 4)), ("fft-sum-bwd-w", (2, 1))])
    buffers.append(("fft-sum-all", sum(v for _, v in buffers[:5]) + buffers[1][1]))
    transforms = bs * ic + bs * oc + oc * eff
    pointwise_in, pointwise_out = bs * oc * ic * ih * iw, bs * oc * ic * oh * ow
    ops = [
        ("fft-ops-fwd", ih * iw * _log2_side(s.in_hw) * transforms + pointwise_in),
        ("fft-ops-bwd-x", oh * ow * _log2_side(s.out_hw) * transforms + pointwise_out),
        # perf4sight writes ip * log2(ip^2) here (not ip^2 * log2 ip); kept as published.
        ("fft-ops-bwd-w", math.sqrt(ih * iw) * 2 * _log2_side(s.in_hw) * transforms + pointwise_in),
    ]
    return buffers + _with_sums(ops, [("fft-ops-sum", (0, 1, 2))])


def _winograd(s: LayerShape, bs: int, m: int, r: int) -> list[tuple[str, float]]:
    ic, oc, eff = s.in_channels, s.out_channels, s.in_channels / s.groups
    tile = (m + r - 1) ** 2
    in_tiles, out_tiles = _tiles(s.in_hw, m), _tiles(s.out_hw, m)
    kernel_tiles = math.ceil(s.kernel[0] / r) * math.ceil(s.kernel[1] / r)
    sums = [("sum-fwd-bwd-x", (0, 1)), ("sum-fwd-bwd-w", (0, 2)), ("sum-bwd", (1, 2)), ("sum-all", (0, 1, 2))]
    buffers = [
        ("fwd", 3 * bs * oc * tile * in_tiles),
        ("bwd-x", 3 * bs * ic * tile * out_tiles),
        ("bwd-w", 3 * bs * oc * eff * tile * in_tiles),
    ]
    ops = [
        ("ops-fwd", bs * oc * eff * in_tiles * kernel_tiles * tile),
        ("ops-bwd-x", bs * ic * oc * out_tiles * kernel_tiles * tile),
        ("ops-bwd-w", bs * oc * eff * in_tiles * _tiles(s.out_hw, r) * tile),
    ]
    named = _with_sums(buffers, sums) + _with_sums(ops, [("ops-" + n, p) for n, p in sums])
    return [(f"wino{m}{r}-{name}", value) for name, value in named]


def _named_features(s: LayerShape, bs: int) -> list[tuple[str, float]]:
    named = [*_tensor_and_gemm(s, bs), *_fft(s, bs)]
    for m, r in WINOGRAD_TILES:
        named += _winograd(s, bs, m, r)
    return named


_NETWORK_FEATURES = ("batch", "params")
FEATURE_NAMES: tuple[str, ...] = _NETWORK_FEATURES + tuple(
    name for name, _ in _named_features(LayerShape("conv", 1, 1), 1)
)


def layer_features(layer: LayerShape, batch: int) -> FloatArray:
    """The per-layer part of the feature vector at ``batch`` samples (FEATURE_NAMES minus batch, params)."""
    if batch < 1:
        raise ValueError(f"batch size {batch} must be at least 1")
    return np.array([value for _, value in _named_features(layer, batch)], dtype=np.float64)


def network_features(net: NetworkShape, batch: int) -> FloatArray:
    """The network's feature vector in :data:`FEATURE_NAMES` order: batch, params, then layer sums."""
    total = np.sum([layer_features(layer, batch) for layer in net.layers], axis=0)
    return np.concatenate(([float(batch), float(net.params)], total))


def _layer_from_cost(cost: LayerCost) -> LayerShape:
    # MACs per sample are weights x output pixels, so they give the inputs each output channel reads.
    taps, pixels = cost.kernel[0] * cost.kernel[1], cost.out_hw[0] * cost.out_hw[1]
    read_per_output = max(1.0, cost.macs / (pixels * cost.out_channels * taps))
    return LayerShape(
        kind=cost.kind, in_channels=cost.in_channels, out_channels=cost.out_channels, in_hw=cost.in_hw,
        kernel=cost.kernel, stride=cost.stride, padding=cost.padding,
        groups=cost.in_channels / read_per_output,
    )


def network_from_costs(costs: Sequence[LayerCost], params: int) -> NetworkShape:
    """A network from its layers' costs (:mod:`governor.core.modelmeta`) and stored parameter count."""
    return NetworkShape(tuple(_layer_from_cost(cost) for cost in costs), params)


def network_from_meta(meta: ModelMeta, k: int) -> NetworkShape:
    """A model file's k-group sub-network, from its metadata (no weights needed)."""
    return network_from_costs(meta.level(k).layers, meta.total_params)
