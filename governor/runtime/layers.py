"""Group-pruned layers whose first k channel groups run in place, without copying weights.

Invariant every layer keeps: for each stored tensor, the elements of groups 1..k form a contiguous
prefix of its storage. ``offsets[j]`` (G+1 entries, in elements of the flattened tensor) marks where
group j+1 starts, so the k-group slice is ``t.view(-1)[:offsets[k]]`` and switching k is a view.

Layouts (og, ig = output and input channels per group):
- ``dense``: every group reads all input channels (the first layer reads the image). Weight
  (G·og, C_in, kh, kw); group j owns rows j·og..(j+1)·og.
- ``grouped``: block-diagonal group convolution, group j reads input group j only. Weight
  (G·og, ig, kh, kw), run with ``groups=k``.
- ``nested``: group j reads input groups <= j (block lower-triangular). Any rectangular k·og × k·ig
  slice of a (G·og, G·ig) matrix is strided, and oneDNN runs strided weights ~6x slower, so the
  weight is stored flat in "shells": shell j is the contiguous (og, (j+1)·ig, kh, kw) block of
  group j. A forward at k runs one convolution per shell and concatenates; no structural zeros.

Batch-norm statistics are per channel; while group t trains, groups < t run in eval mode so their
running statistics never move. The classifier (``GroupHead``) sums one linear head per group:
logits_k = b + sum_{j<=k} W_j · f_j, i.e. a dense linear layer over the active features, whose
weight is stored transposed so the active rows are a contiguous prefix. The bias belongs to group 1.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from governor.core.modelmeta import LayerCost, layer_cost

Connectivity = Literal["dense", "grouped", "nested"]


class GroupState:
    """Shared by every layer of one network: active groups k and the group being trained (1-based)."""

    __slots__ = ("active", "groups", "training_group")

    def __init__(self, groups: int) -> None:
        self.groups = groups
        self.active = groups
        self.training_group: int | None = None


class GroupedTensor(NamedTuple):
    """A stored tensor and where each group's elements start in its flattened storage."""

    name: str
    tensor: Tensor
    offsets: tuple[int, ...]


def _row_offsets(groups: int, rows_per_group: int, row_size: int) -> tuple[int, ...]:
    return tuple(j * rows_per_group * row_size for j in range(groups + 1))


def _he_normal_(t: Tensor, fan_in: int, gen: torch.Generator | None) -> None:
    with torch.no_grad():
        t.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)


class GroupConv2d(nn.Module):
    """A convolution (or, with 1x1 kernels on 1x1 maps, a linear layer) split into G channel groups."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, *, state: GroupState,
        connectivity: Connectivity, stride: int = 1, padding: int = 0, kind: str = "conv",
        gen: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        G = state.groups
        if out_channels % G or (connectivity != "dense" and in_channels % G):
            raise ValueError(f"channels {in_channels}->{out_channels} must be divisible by groups={G}")
        self.state, self.connectivity, self.kind = state, connectivity, kind
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel, self.stride, self.padding = kernel_size, stride, padding
        self.og, self.ig = out_channels // G, in_channels // G
        self.weight = nn.Parameter(torch.empty(self._storage_shape()))
        self._init_weights(gen)

    def _storage_shape(self) -> tuple[int, ...]:
        kk, G = self.kernel * self.kernel, self.state.groups
        if self.connectivity == "dense":
            return (self.out_channels, self.in_channels, self.kernel, self.kernel)
        if self.connectivity == "grouped":
            return (self.out_channels, self.ig, self.kernel, self.kernel)
        return (self.og * self.ig * kk * G * (G + 1) // 2,)

    def _init_weights(self, gen: torch.Generator | None) -> None:
        kk = self.kernel * self.kernel
        if self.connectivity != "nested":
            _he_normal_(self.weight, self.weight[0].numel(), gen)
            return
        for j in range(self.state.groups):
            _he_normal_(self._shell(j), (j + 1) * self.ig * kk, gen)

    def group_offsets(self) -> tuple[int, ...]:
        G, kk = self.state.groups, self.kernel * self.kernel
        if self.connectivity == "nested":
            return tuple(self.og * self.ig * kk * j * (j + 1) // 2 for j in range(G + 1))
        return _row_offsets(G, self.og, self.weight[0].numel())

    def _shell(self, j: int) -> Tensor:
        start, stop = self.group_offsets()[j : j + 2]
        return self.weight[start:stop].view(self.og, (j + 1) * self.ig, self.kernel, self.kernel)

    def forward(self, x: Tensor) -> Tensor:
        k = self.state.active
        if self.connectivity == "nested":
            outs = [self._conv(x[:, : (j + 1) * self.ig], self._shell(j), 1) for j in range(k)]
            return outs[0] if k == 1 else torch.cat(outs, dim=1)
        groups = k if self.connectivity == "grouped" else 1
        return self._conv(x, self.weight[: k * self.og], groups)

    def _conv(self, x: Tensor, weight: Tensor, groups: int) -> Tensor:
        return F.conv2d(x, weight, None, self.stride, self.padding, 1, groups)

    def cost(self, k: int, in_hw: tuple[int, int], name: str) -> LayerCost:
        in_channels = self.in_channels if self.connectivity == "dense" else k * self.ig
        return layer_cost(
            name, kind="linear" if self.kind == "linear" else "conv", connectivity=self.connectivity,
            k=k, in_channels=in_channels, out_channels=k * self.og, kernel=(self.kernel, self.kernel),
            stride=self.stride, padding=self.padding, in_hw=in_hw,
        )


class GroupBatchNorm2d(nn.Module):
    """Per-channel batch norm; frozen groups (< the trained one) use running stats and never update them."""

    running_mean: Tensor  # buffers, registered in __init__ (declared for the type checker)
    running_var: Tensor

    def __init__(self, channels: int, *, state: GroupState, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.state, self.momentum, self.eps = state, momentum, eps
        self.per_group = channels // state.groups
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def group_offsets(self) -> tuple[int, ...]:
        return _row_offsets(self.state.groups, self.per_group, 1)

    def _norm(self, x: Tensor, start: int, stop: int, train: bool) -> Tensor:
        return F.batch_norm(
            x, self.running_mean[start:stop], self.running_var[start:stop], self.weight[start:stop],
            self.bias[start:stop], train, self.momentum, self.eps,
        )

    def forward(self, x: Tensor) -> Tensor:
        active = self.state.active * self.per_group
        trained = self.state.training_group
        if not self.training:
            return self._norm(x, 0, active, False)
        frozen = 0 if trained is None else (trained - 1) * self.per_group
        moving = self._norm(x[:, frozen:active], frozen, active, True)
        return moving if frozen == 0 else torch.cat([self._norm(x[:, :frozen], 0, frozen, False), moving], 1)


class GroupHead(nn.Module):
    """Classifier: the sum of one linear head per active group (see the module docstring)."""

    def __init__(self, features: int, classes: int, *, state: GroupState, gen: torch.Generator | None = None):
        super().__init__()
        self.state, self.features, self.classes = state, features, classes
        self.per_group = features // state.groups
        self.weight_t = nn.Parameter(torch.empty(features, classes))
        self.bias = nn.Parameter(torch.zeros(classes))
        with torch.no_grad():
            bound = 1.0 / math.sqrt(features)
            self.weight_t.uniform_(-bound, bound, generator=gen)

    def group_offsets(self, name: str) -> tuple[int, ...]:
        if name == "bias":
            return (0,) + (self.classes,) * self.state.groups
        return _row_offsets(self.state.groups, self.per_group, self.classes)

    def forward(self, features: Tensor) -> Tensor:
        active = self.state.active * self.per_group
        return torch.addmm(self.bias, features, self.weight_t[:active])

    def cost(self, k: int, in_hw: tuple[int, int], name: str) -> LayerCost:
        return layer_cost(
            name, kind="linear", connectivity="dense", k=k, in_channels=k * self.per_group,
            out_channels=self.classes, bias=True,
        )
