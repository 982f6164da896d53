"""Small user-style networks for the conversion tests: every coupling a real CNN has, at toy sizes."""

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 4, 1)
        self.expand = nn.Conv2d(channels // 4, channels, 1)

    def forward(self, x):
        scale = F.adaptive_avg_pool2d(x, 1)
        return x * torch.sigmoid(self.expand(F.relu(self.reduce(scale))))


class Coupled(nn.Module):
    """Residual add, concat, depthwise conv, a squeeze-excitation gate, a split, a grouped conv, a
    channel shuffle (view/transpose/view), a layer-scale constant and a flattening classifier."""

    def __init__(self, classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.res = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.side = nn.Conv2d(16, 8, 1)
        self.depthwise = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.gate = SqueezeExcite(24)
        self.grouped = nn.Conv2d(12, 12, 3, padding=1, groups=4)
        self.layer_scale = nn.Parameter(torch.full((24, 1, 1), 0.5))
        self.head = nn.Linear(24 * 2 * 2, classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(x + self.res(x))
        x = torch.cat([x, self.side(x)], dim=1)
        x = self.gate(F.hardswish(self.depthwise(x)))
        left, right = x.chunk(2, dim=1)
        x = torch.cat([left, self.grouped(right)], dim=1) * self.layer_scale
        b, c, h, w = x.size()
        x = x.view(b, 2, c // 2, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 2)
        return self.head(torch.flatten(x, 1))


class Plain(nn.Module):
    """conv-bn-relu, conv-bn-relu, global pool, linear: small enough to compute a corner by hand."""

    def __init__(self, classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        return self.fc(x.mean((2, 3)))


class Sorting(nn.Module):
    """An op the converter does not know (a sort along channels)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return torch.sort(self.conv(x), dim=1).values.mean((2, 3))


class ChannelMean(nn.Module):
    """A mean over the channel axis: cannot be split into groups."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x).mean(1).flatten(1)


def randomise_batch_norm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm non-trivial statistics and affine, as a trained network has."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module.eval()


def coupled(classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return randomise_batch_norm(Coupled(classes))
