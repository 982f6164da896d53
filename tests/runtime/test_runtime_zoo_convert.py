"""Every torchvision family (the zoo's smallest of each) converts, and k = G is the original network.

Small inputs keep this quick (64x64; inception_v3 needs 75x75); benchmarks/convert.py runs every model
at its native size. Grouped and nested convert wherever no layer norm mixes the channels (ConvNeXt).
"""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from governor.runtime.converter import convert
from governor.runtime.converter.sources import check_equivalence
from governor.runtime.zoo import FAMILY, MODELS, PARAMS

SMALLEST = {family: min((n for n in MODELS if FAMILY[n] == family), key=PARAMS.__getitem__)
            for family in dict.fromkeys(FAMILY.values())}


@pytest.mark.parametrize("family", list(SMALLEST))
def test_family_converts_exactly_and_every_k_runs(family):
    name = SMALLEST[family]
    shape = (3, 75, 75) if name == "inception_v3" else (3, 64, 64)
    torch.manual_seed(0)
    module = MODELS[name](num_classes=10).eval()
    net = convert(module, shape, groups=4)
    assert check_equivalence(module, net, shape) < 1e-4
    macs = [sum(layer.macs for layer in net.layer_costs(k)) for k in range(1, 5)]
    assert macs == sorted(macs) and macs[0] < macs[-1]
    x = torch.randn(1, *shape)
    with torch.no_grad():
        for k in (1, 2):
            net.set_active_groups(k)
            with FlopCounterMode(display=False) as counter:
                assert net(x).shape == (1, 10)
            assert counter.get_total_flops() // 2 == macs[k - 1]  # the file's MACs are what torch runs
    if family == "ConvNeXt":
        with pytest.raises(ValueError, match="layer_norm"):
            net.with_connectivity("nested")
    else:
        nested = net.with_connectivity("nested")
        nested.set_active_groups(2)
        with torch.no_grad():
            assert nested(x).shape == (1, 10)
        assert sum(layer.macs for layer in nested.layer_costs(2)) < macs[1]


def test_torchvision_sources_build_through_torchvision_models_where_it_imports(monkeypatch):
    # torchvision does not import with this CPU torch: a stand-in torchvision.models holding the zoo's
    # constructors is what `governor convert torchvision:NAME` finds on a machine where it does
    import sys
    import types

    from governor.runtime.converter.sources import module_from_source

    fake = types.ModuleType("torchvision")
    fake.models = types.ModuleType("torchvision.models")  # type: ignore[attr-defined]
    fake.models.mobilenet_v2 = MODELS["mobilenet_v2"]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    monkeypatch.setitem(sys.modules, "torchvision.models", fake.models)  # type: ignore[attr-defined]
    module = module_from_source("torchvision:mobilenet_v2", {"num_classes": 7})
    assert module.classifier[-1].out_features == 7
    with pytest.raises(ValueError, match="has no model 'resnet9000'"):
        module_from_source("torchvision:resnet9000")


def test_without_torchvision_the_error_points_at_the_zoo(monkeypatch):
    import sys

    from governor.runtime.converter.sources import module_from_source

    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails, as here
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ValueError, match=r"governor\.runtime\.zoo"):
        module_from_source("torchvision:resnet18")
    assert module_from_source("governor.runtime.zoo:resnet18").fc.out_features == 1000
