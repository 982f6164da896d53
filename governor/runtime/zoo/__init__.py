"""A torch-only model zoo: torchvision's classification networks without torchvision.

Each constructor follows torchvision 0.28.0's definition of the same name: the same keyword arguments
(``num_classes`` and the family's own, such as ``width_mult`` or ``dropout``), the same module tree, so
``state_dict()`` keys and shapes are torchvision's and its weights load with ``strict=True``. There is
no weight download: load a state dict you already have. Forward passes are plain in eval mode (no
control flow on tensor values), so ``torch.fx.symbolic_trace`` and the converter can read them.

Used by the tests, by benchmarks/convert.py and by anyone who wants torchvision-compatible networks
where torchvision does not install (tests/runtime/fixtures/zoo_torchvision.json, made by
tools/zoo_fixture.py from torchvision's sources, pins keys, shapes and parameter counts).

    MODELS      name -> constructor (keyword arguments only)
    FAMILY      name -> family label, e.g. "ResNeXt", "MobileNet v3"
    INPUT_SIZE  name -> native (C, H, W) input: (3, 224, 224), or (3, 299, 299) for inception_v3
    PARAMS      name -> torchvision's published parameter count (``_meta["num_params"]`` of its weights);
                default construction matches it, except googlenet: its published weights come without
                the two auxiliary heads, so the count is that of ``googlenet(aux_logits=False)``
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from governor.runtime.zoo.alexnet import alexnet
from governor.runtime.zoo.convnext import convnext_tiny
from governor.runtime.zoo.densenet import densenet121
from governor.runtime.zoo.efficientnet import efficientnet_b0, efficientnet_b1, efficientnet_v2_s
from governor.runtime.zoo.googlenet import googlenet
from governor.runtime.zoo.inception import inception_v3
from governor.runtime.zoo.mnasnet import mnasnet0_5, mnasnet1_0
from governor.runtime.zoo.mobilenetv2 import mobilenet_v2
from governor.runtime.zoo.mobilenetv3 import mobilenet_v3_large, mobilenet_v3_small
from governor.runtime.zoo.regnet import regnet_x_400mf, regnet_y_400mf
from governor.runtime.zoo.resnet import resnet18, resnet34, resnet50, resnext50_32x4d, wide_resnet50_2
from governor.runtime.zoo.shufflenetv2 import shufflenet_v2_x0_5, shufflenet_v2_x1_0
from governor.runtime.zoo.squeezenet import squeezenet1_0, squeezenet1_1
from governor.runtime.zoo.vgg import vgg11, vgg11_bn, vgg16, vgg16_bn

# name: (constructor, family, torchvision's published parameter count)
_TABLE: dict[str, tuple[Callable[..., nn.Module], str, int]] = {
    "alexnet": (alexnet, "AlexNet", 61100840),
    "vgg11": (vgg11, "VGG", 132863336),
    "vgg16": (vgg16, "VGG", 138357544),
    "vgg11_bn": (vgg11_bn, "VGG", 132868840),
    "vgg16_bn": (vgg16_bn, "VGG", 138365992),
    "resnet18": (resnet18, "ResNet", 11689512),
    "resnet34": (resnet34, "ResNet", 21797672),
    "resnet50": (resnet50, "ResNet", 25557032),
    "resnext50_32x4d": (resnext50_32x4d, "ResNeXt", 25028904),
    "wide_resnet50_2": (wide_resnet50_2, "Wide ResNet", 68883240),
    "squeezenet1_0": (squeezenet1_0, "SqueezeNet", 1248424),
    "squeezenet1_1": (squeezenet1_1, "SqueezeNet", 1235496),
    "densenet121": (densenet121, "DenseNet", 7978856),
    "googlenet": (googlenet, "GoogLeNet", 6624904),
    "inception_v3": (inception_v3, "Inception v3", 27161264),
    "shufflenet_v2_x0_5": (shufflenet_v2_x0_5, "ShuffleNet v2", 1366792),
    "shufflenet_v2_x1_0": (shufflenet_v2_x1_0, "ShuffleNet v2", 2278604),
    "mobilenet_v2": (mobilenet_v2, "MobileNet v2", 3504872),
    "mobilenet_v3_large": (mobilenet_v3_large, "MobileNet v3", 5483032),
    "mobilenet_v3_small": (mobilenet_v3_small, "MobileNet v3", 2542856),
    "mnasnet0_5": (mnasnet0_5, "MNASNet", 2218512),
    "mnasnet1_0": (mnasnet1_0, "MNASNet", 4383312),
    "efficientnet_b0": (efficientnet_b0, "EfficientNet", 5288548),
    "efficientnet_b1": (efficientnet_b1, "EfficientNet", 7794184),
    "efficientnet_v2_s": (efficientnet_v2_s, "EfficientNet v2", 21458488),
    "regnet_x_400mf": (regnet_x_400mf, "RegNet", 5495976),
    "regnet_y_400mf": (regnet_y_400mf, "RegNet", 4344144),
    "convnext_tiny": (convnext_tiny, "ConvNeXt", 28589128),
}

MODELS: dict[str, Callable[..., nn.Module]] = {name: row[0] for name, row in _TABLE.items()}
FAMILY: dict[str, str] = {name: row[1] for name, row in _TABLE.items()}
PARAMS: dict[str, int] = {name: row[2] for name, row in _TABLE.items()}
INPUT_SIZE: dict[str, tuple[int, int, int]] = {
    name: (3, 299, 299) if name == "inception_v3" else (3, 224, 224) for name in _TABLE
}

__all__ = ["FAMILY", "INPUT_SIZE", "MODELS", "PARAMS", *MODELS]
