"""Dynamic networks: AlexNet for CIFAR-10 and a small ResNet, both switchable to their first k groups.

Layer tables (docs/models.md has them with shapes): default widths are for 32x32 CIFAR-10 and scale
with ``width``; any input size and class count works (pools are "same"-style, the AlexNet classifier
average-pools to at most 4x4). Every layer of one network shares a ``GroupState``, so
``set_active_groups(k)`` is one integer store: O(1), no allocation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from governor.core.modelmeta import LayerCost
from governor.runtime.layers import (
    Connectivity,
    GroupBatchNorm2d,
    GroupConv2d,
    GroupedTensor,
    GroupHead,
    GroupState,
)

ARCHS = ("alexnet-cifar", "resnet-small")
# arch -> (conv widths, hidden fully connected widths) at width 1.0
DEFAULT_WIDTHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "alexnet-cifar": ((64, 192, 384, 256, 256), (1024, 1024)),
    "resnet-small": ((32, 64, 128), ()),
}
ALEXNET_KERNELS = (5, 5, 3, 3, 3)
ALEXNET_POOL_AFTER = (True, True, False, False, True)


def scaled_widths(arch: str, width: float, groups: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Default widths times ``width``, rounded to a multiple of ``groups`` (at least one channel per group)."""
    if arch not in DEFAULT_WIDTHS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    convs, fcs = DEFAULT_WIDTHS[arch]

    def scale(w: int) -> int:
        return max(groups, round(w * width / groups) * groups)

    return tuple(scale(w) for w in convs), tuple(scale(w) for w in fcs)


class DynamicNet(nn.Module):
    """Base of the dynamic networks: k switching, training stages, grouped tensors and per-k costs."""

    input_mean: Tensor  # buffers, registered in __init__ (declared for the type checker)
    input_std: Tensor

    def __init__(self, groups: int, input_shape: tuple[int, int, int], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if groups < 1:
            raise ValueError(f"groups must be >= 1, got {groups}")
        self.group_state = GroupState(groups)
        self.input_shape = tuple(input_shape)
        self.register_buffer("input_mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("input_std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def groups(self) -> int:
        return self.group_state.groups

    @property
    def active_groups(self) -> int:
        return self.group_state.active

    def set_active_groups(self, k: int) -> None:
        """Run the first k groups from now on (1 <= k <= G); weights are not touched."""
        if not 1 <= k <= self.groups:
            raise ValueError(f"k={k} is out of range: this network has groups 1..{self.groups}")
        self.group_state.active = k

    def set_training_stage(self, k: int | None) -> None:
        """Stage k: run k groups with groups < k frozen (eval-mode batch norm). None: all groups train."""
        self.set_active_groups(self.groups if k is None else k)
        self.group_state.training_group = k

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.input_mean) / self.input_std

    def grouped_tensors(self) -> list[GroupedTensor]:
        """Every parameter and buffer that is split into groups, with its group offsets."""
        found = []
        for prefix, module in self.named_modules():
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                offsets = _offsets_of(module, name)
                if offsets is not None:
                    found.append(GroupedTensor(f"{prefix}.{name}".lstrip("."), tensor, offsets))
        return found

    def layer_costs(self, k: int) -> list[LayerCost]:
        """Shape and cost of each weight layer at k groups, traced with one batch-1 forward pass."""
        costs: list[LayerCost] = []
        hooks = [
            module.register_forward_pre_hook(
                lambda mod, args, name=name: costs.append(mod.cost(k, _hw(args[0]), name))
            )
            for name, module in self.named_modules() if isinstance(module, GroupConv2d | GroupHead)
        ]
        previous, was_training = self.active_groups, self.training
        try:
            self.eval()
            self.set_active_groups(k)
            with torch.inference_mode():
                self(torch.zeros(1, *self.input_shape, device=self.input_mean.device))
        finally:
            for hook in hooks:
                hook.remove()
            self.set_active_groups(previous)
            self.train(was_training)
        return costs


def _offsets_of(module: nn.Module, name: str) -> tuple[int, ...] | None:
    if isinstance(module, GroupHead):
        return module.group_offsets(name)
    if isinstance(module, GroupConv2d | GroupBatchNorm2d):
        return module.group_offsets()
    return None


def _hw(x: Tensor) -> tuple[int, int]:
    return (int(x.shape[-2]), int(x.shape[-1]))


def _pool(x: Tensor) -> Tensor:
    # AlexNet's overlapping 3x3/2 max pool, padded so 32 -> 16 -> 8 -> 4 and 8 -> 4 -> 2 -> 1.
    return F.max_pool2d(x, 3, 2, 1) if min(x.shape[-2:]) > 1 else x


class AlexNetCifar(DynamicNet):
    """Five conv layers + two hidden FC layers + summed per-group heads (docs/models.md)."""

    def __init__(self, *, groups: int, connectivity: Literal["grouped", "nested"], input_shape: tuple[int, int, int],
                 classes: int, widths: Sequence[int], fc_widths: Sequence[int], mean: Sequence[float],
                 std: Sequence[float], gen: torch.Generator | None = None):
        super().__init__(groups, input_shape, mean, std)
        st, convs, norms = self.group_state, nn.ModuleList(), nn.ModuleList()
        in_ch, hw = input_shape[0], tuple(input_shape[1:])
        for i, (w, kk) in enumerate(zip(widths, ALEXNET_KERNELS, strict=True)):
            conv = "dense" if i == 0 else connectivity
            convs.append(GroupConv2d(in_ch, w, kk, padding=kk // 2, state=st, connectivity=conv, gen=gen))
            norms.append(GroupBatchNorm2d(w, state=st))
            in_ch = w
            hw = tuple((n + 1) // 2 if ALEXNET_POOL_AFTER[i] and n > 1 else n for n in hw)
        self.features, self.feature_norms = convs, norms
        self.pooled = min(min(hw), 4)
        fcs, fc_norms, in_f = nn.ModuleList(), nn.ModuleList(), in_ch * self.pooled**2
        for w in fc_widths:
            fcs.append(GroupConv2d(in_f, w, state=st, connectivity=connectivity, kind="linear", gen=gen))
            fc_norms.append(GroupBatchNorm2d(w, state=st))
            in_f = w
        self.fcs, self.fc_norms = fcs, fc_norms
        self.head = GroupHead(in_f, classes, state=st, gen=gen)

    def forward(self, x: Tensor) -> Tensor:
        x = self.normalize(x)
        for conv, norm, pool in zip(self.features, self.feature_norms, ALEXNET_POOL_AFTER, strict=False):
            x = F.relu(norm(conv(x)))
            x = _pool(x) if pool else x
        if x.shape[-1] != self.pooled or x.shape[-2] != self.pooled:
            x = F.adaptive_avg_pool2d(x, self.pooled)
        # Channel-major flattening keeps each group's features contiguous, so FC groups line up.
        x = x.reshape(x.shape[0], -1, 1, 1)
        for fc, norm in zip(self.fcs, self.fc_norms, strict=True):
            x = F.relu(norm(fc(x)))
        out: Tensor = self.head(x.flatten(1))
        return out


class _BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, st: GroupState, conn: Connectivity,
                 gen: torch.Generator | None):
        super().__init__()
        self.conv1 = GroupConv2d(in_ch, out_ch, 3, stride=stride, padding=1, state=st, connectivity=conn, gen=gen)
        self.bn1 = GroupBatchNorm2d(out_ch, state=st)
        self.conv2 = GroupConv2d(out_ch, out_ch, 3, padding=1, state=st, connectivity=conn, gen=gen)
        self.bn2 = GroupBatchNorm2d(out_ch, state=st)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            conv = GroupConv2d(in_ch, out_ch, 1, stride=stride, state=st, connectivity=conn, gen=gen)
            self.shortcut = nn.Sequential(conv, GroupBatchNorm2d(out_ch, state=st))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNetSmall(DynamicNet):
    """Stem conv + one basic block per stage (strides 1, 2, 2) + global average pool + summed heads."""

    def __init__(self, *, groups: int, connectivity: Literal["grouped", "nested"], input_shape: tuple[int, int, int],
                 classes: int, widths: Sequence[int], fc_widths: Sequence[int] = (), mean: Sequence[float],
                 std: Sequence[float], gen: torch.Generator | None = None):
        super().__init__(groups, input_shape, mean, std)
        if fc_widths:
            raise ValueError("resnet-small has no hidden fully connected layers (fc_widths must be empty)")
        st = self.group_state
        self.stem = GroupConv2d(input_shape[0], widths[0], 3, padding=1, state=st, connectivity="dense", gen=gen)
        self.stem_norm = GroupBatchNorm2d(widths[0], state=st)
        strides = (1,) + (2,) * (len(widths) - 1)
        ins = (widths[0], *widths[:-1])
        self.blocks = nn.Sequential(*(
            _BasicBlock(i, o, s, st, connectivity, gen) for i, o, s in zip(ins, widths, strides, strict=True)
        ))
        self.head = GroupHead(widths[-1], classes, state=st, gen=gen)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.stem_norm(self.stem(self.normalize(x))))
        x = self.blocks(x)
        out: Tensor = self.head(x.mean(dim=(2, 3)))
        return out


def build_net(arch: str, **kwargs: object) -> DynamicNet:
    """Build ``arch`` ("alexnet-cifar" | "resnet-small") with the keyword arguments of its class."""
    classes: dict[str, type[AlexNetCifar] | type[ResNetSmall]] = {
        "alexnet-cifar": AlexNetCifar, "resnet-small": ResNetSmall,
    }
    if arch not in classes:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    return classes[arch](**kwargs)  # type: ignore[arg-type]
