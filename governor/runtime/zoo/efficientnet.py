"""EfficientNet B0/B1 and EfficientNetV2-S (torchvision.models.efficientnet): MBConv and Fused-MBConv stages.

Residual branches go through ``StochasticDepth`` (row mode), the identity in eval, linearly rising to
``stochastic_depth_prob`` over the blocks, as torchvision does.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from governor.runtime.zoo._layers import ConvNormAct, SqueezeExcitation, StochasticDepth, make_divisible


@dataclasses.dataclass
class MBConvConfig:
    """One stage: ``num_layers`` blocks, the first with ``stride`` and ``input_channels``; fused = Fused-MBConv."""

    expand_ratio: float
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int
    fused: bool = False

    @staticmethod
    def adjust_channels(channels: float, width_mult: float, min_value: int | None = None) -> int:
        return make_divisible(channels * width_mult, 8, min_value)

    @classmethod
    def scaled(cls, expand_ratio: float, kernel: int, stride: int, input_channels: int, out_channels: int,
               num_layers: int, width_mult: float = 1.0, depth_mult: float = 1.0) -> MBConvConfig:
        """An MBConv stage with EfficientNet v1's compound scaling of width and depth."""
        return cls(expand_ratio, kernel, stride, cls.adjust_channels(input_channels, width_mult),
                   cls.adjust_channels(out_channels, width_mult), math.ceil(num_layers * depth_mult))


class MBConv(nn.Module):
    """1x1 expansion, depthwise conv, SE (squeeze = input/4, SiLU), 1x1 projection; residual when shapes allow."""

    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer: Callable[..., nn.Module],
                 se_layer: Callable[..., nn.Module] = SqueezeExcitation) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers: list[nn.Module] = []
        if expanded != cnf.input_channels:
            layers.append(ConvNormAct(cnf.input_channels, expanded, 1, norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(ConvNormAct(expanded, expanded, cnf.kernel, stride=cnf.stride, groups=expanded,
                                  norm_layer=norm_layer, activation_layer=nn.SiLU))
        layers.append(se_layer(expanded, max(1, cnf.input_channels // 4), activation=partial(nn.SiLU, inplace=True)))
        layers.append(ConvNormAct(expanded, cnf.out_channels, 1, norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        out: Tensor = self.stochastic_depth(result) + x if self.use_res_connect else result
        return out


class FusedMBConv(nn.Module):
    """A full kxk conv doing the expansion (then a 1x1 projection), or one kxk conv when expand_ratio is 1."""

    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer: Callable[..., nn.Module]) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers: list[nn.Module] = []
        if expanded != cnf.input_channels:
            layers.append(ConvNormAct(cnf.input_channels, expanded, cnf.kernel, stride=cnf.stride,
                                      norm_layer=norm_layer, activation_layer=nn.SiLU))
            layers.append(ConvNormAct(expanded, cnf.out_channels, 1, norm_layer=norm_layer, activation_layer=None))
        else:
            layers.append(ConvNormAct(cnf.input_channels, cnf.out_channels, cnf.kernel, stride=cnf.stride,
                                      norm_layer=norm_layer, activation_layer=nn.SiLU))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, x: Tensor) -> Tensor:
        result = self.block(x)
        out: Tensor = self.stochastic_depth(result) + x if self.use_res_connect else result
        return out


class EfficientNet(nn.Module):
    def __init__(
        self,
        inverted_residual_setting: Sequence[MBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        norm_layer: Callable[..., nn.Module] | None = None,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        norm_layer = nn.BatchNorm2d if norm_layer is None else norm_layer
        layers: list[nn.Module] = [ConvNormAct(3, inverted_residual_setting[0].input_channels, 3, stride=2,
                                               norm_layer=norm_layer, activation_layer=nn.SiLU)]
        total_blocks = sum(cnf.num_layers for cnf in inverted_residual_setting)
        block_id = 0
        for cnf in inverted_residual_setting:
            stage: list[nn.Module] = []
            for i in range(cnf.num_layers):
                block_cnf = cnf if i == 0 else dataclasses.replace(cnf, input_channels=cnf.out_channels, stride=1)
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                block = FusedMBConv if cnf.fused else MBConv
                stage.append(block(block_cnf, sd_prob, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = inverted_residual_setting[-1].out_channels
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(ConvNormAct(last_in, last_out, 1, norm_layer=norm_layer, activation_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes))

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))
        return out


def _v1_setting(width_mult: float, depth_mult: float) -> list[MBConvConfig]:
    c = partial(MBConvConfig.scaled, width_mult=width_mult, depth_mult=depth_mult)
    # expand_ratio, kernel, stride, input, output, layers
    return [c(1, 3, 1, 32, 16, 1), c(6, 3, 2, 16, 24, 2), c(6, 5, 2, 24, 40, 2), c(6, 3, 2, 40, 80, 3),
            c(6, 5, 1, 80, 112, 3), c(6, 5, 2, 112, 192, 4), c(6, 3, 1, 192, 320, 1)]


def efficientnet_b0(**kwargs: Any) -> EfficientNet:
    return EfficientNet(_v1_setting(1.0, 1.0), kwargs.pop("dropout", 0.2), **kwargs)


def efficientnet_b1(**kwargs: Any) -> EfficientNet:
    return EfficientNet(_v1_setting(1.0, 1.1), kwargs.pop("dropout", 0.2), **kwargs)


def efficientnet_v2_s(**kwargs: Any) -> EfficientNet:
    fused = partial(MBConvConfig, fused=True)
    setting = [fused(1, 3, 1, 24, 24, 2), fused(4, 3, 2, 24, 48, 4), fused(4, 3, 2, 48, 64, 4),
               MBConvConfig(4, 3, 2, 64, 128, 6), MBConvConfig(6, 3, 1, 128, 160, 9),
               MBConvConfig(6, 3, 2, 160, 256, 15)]
    kwargs.setdefault("norm_layer", partial(nn.BatchNorm2d, eps=1e-03))
    return EfficientNet(setting, kwargs.pop("dropout", 0.2), last_channel=1280, **kwargs)
