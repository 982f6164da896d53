"""Converting a user's network: k = G is the original, k < G is the slimmable corner, bad graphs are refused."""

import json
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from governor.core.modelgraph import OPS
from governor.core.modelmeta import META_ENTRY, ModelFileError, TrainingInfo
from governor.runtime.converter import ConversionError, convert
from governor.runtime.converter.sources import check_equivalence
from governor.runtime.graphnet import GraphNet
from governor.runtime.modelfile import describe_converted, load_model, save_model
from tests.runtime.convert_nets import ChannelMean, Plain, Sorting, coupled, randomise_batch_norm

SHAPE = (3, 8, 8)
INFO = TrainingInfo(dataset="none", train_samples=0, val_samples=0, epochs_per_stage=0, batch_size=1, lr=0.0,
                    weight_decay=0.0, seed=0, seconds=0.0)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _run(net: GraphNet, x: torch.Tensor, k: int) -> torch.Tensor:
    net.set_active_groups(k)
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("order", ["l1", "bn", "none"])
def test_k_equal_to_g_is_the_original_network_with_every_coupling(order):
    module = coupled()
    net = convert(module, SHAPE, groups=4, order=order)
    x = torch.randn(3, *SHAPE)
    with torch.no_grad():
        expected = module(x)
    assert _relative(_run(net, x, 4), expected) < 1e-5
    ops = {n.op for n in net.spec.nodes}
    assert {"add", "mul", "cat", "gather", "flatten", "constant", "batch_norm"} <= ops  # every coupling was met
    for k in (1, 2, 3):
        out = _run(net, x, k)
        assert out.shape == expected.shape and torch.isfinite(out).all()


def test_every_op_has_a_runtime():
    assert all(hasattr(GraphNet, f"_op_{op}") for op in OPS)


def test_k_groups_run_the_first_k_over_g_channels_of_every_layer():
    """Order "none": the k-group sub-network is the top-left corner of every weight (Slimmable Networks)."""
    torch.manual_seed(1)
    module = randomise_batch_norm(Plain())
    net = convert(module, SHAPE, groups=4, order="none")
    x = torch.randn(2, *SHAPE)
    for k in (1, 2, 3):
        a, b = 2 * k, 4 * k  # active channels of the two convolutions
        h = F.conv2d(x, module.c1.weight[:a], module.c1.bias[:a], padding=1)
        h = F.relu(F.batch_norm(h, module.b1.running_mean[:a], module.b1.running_var[:a], module.b1.weight[:a],
                                module.b1.bias[:a], False, 0.0, module.b1.eps))
        h = F.conv2d(h, module.c2.weight[:b, :a], module.c2.bias[:b], padding=1)
        h = F.relu(F.batch_norm(h, module.b2.running_mean[:b], module.b2.running_var[:b], module.b2.weight[:b],
                                module.b2.bias[:b], False, 0.0, module.b2.eps))
        expected = F.linear(h.mean((2, 3)), module.fc.weight[:, :b], module.fc.bias)
        assert _relative(_run(net, x, k), expected.detach()) < 1e-5


def test_l1_order_puts_the_largest_filters_in_group_one():
    torch.manual_seed(2)
    module = randomise_batch_norm(Plain())
    with torch.no_grad():
        module.c2.weight[5].mul_(100.0)  # filter 5 matters most
    net = convert(module, SHAPE, groups=4, order="l1")
    group_one = net.tensor("c2", "weight")[:4].detach()  # 16 filters in 4 groups
    target = module.c2.weight[5].detach().abs().sum()
    assert any(torch.isclose(row.abs().sum(), target) for row in group_one)
    plain = convert(module, SHAPE, groups=4, order="none").tensor("c2", "weight")[:4].detach()
    assert not any(torch.isclose(row.abs().sum(), target) for row in plain)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert _relative(_run(net, x, 4), module(x)) < 1e-5


def test_macs_and_parameters_grow_with_k_and_match_the_original_at_g():
    module = coupled()
    net = convert(module, SHAPE, groups=4)
    meta = describe_converted(net, classes=[str(i) for i in range(10)], info=INFO)
    macs = [lv.macs for lv in meta.levels]
    params = [lv.params for lv in meta.levels]
    assert macs == sorted(macs) and macs[0] < macs[-1]
    assert params[-1] == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("module", "node", "words"), [
    (Sorting(), "sort", "not supported"),
    (ChannelMean(), "mean", "channel axis"),
])
def test_unsupported_graphs_are_refused_naming_the_node(module, node, words):
    with pytest.raises(ConversionError, match=f"{node}.*{words}"):
        convert(module, SHAPE, groups=2)


def test_bad_arguments_are_refused():
    with pytest.raises(ConversionError, match="connectivity"):
        convert(Plain(), SHAPE, connectivity="dense")
    with pytest.raises(ConversionError, match="C,H,W"):
        convert(Plain(), (3, 8))
    with pytest.raises(ConversionError, match="groups must be >= 1"):
        convert(Plain(), SHAPE, groups=0)


def test_model_file_round_trips_and_refuses_unknown_ops(tmp_path):
    net = convert(coupled(), SHAPE, groups=4)
    path = tmp_path / "c.dgm"
    save_model(path, net, describe_converted(net, classes=[str(i) for i in range(10)], info=INFO))
    loaded = load_model(path)
    x = torch.randn(2, *SHAPE)
    for k in range(1, 5):
        assert torch.equal(_run(loaded.net, x, k), _run(net, x, k))
    assert loaded.meta.format_version == 2 and loaded.meta.graph is not None
    with zipfile.ZipFile(path) as old:
        entries = {name: old.read(name) for name in old.namelist()}
    meta = json.loads(entries[META_ENTRY])
    meta["graph"]["nodes"][3]["op"] = "os.system"
    entries[META_ENTRY] = json.dumps(meta).encode()
    bad = tmp_path / "bad.dgm"
    with zipfile.ZipFile(bad, "w") as new:
        for name, data in entries.items():
            new.writestr(name, data)
    with pytest.raises(ModelFileError, match=r"ops this governor does not have.*os\.system"):
        load_model(bad)


def test_onnx_files_per_k_match_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    from governor.runtime.export import export_onnx

    net = convert(coupled(), SHAPE, groups=4)
    before = {k: _run(net, torch.ones(1, *SHAPE), k) for k in (1, 4)}
    written = export_onnx(net, tmp_path, [1, 2, 4])
    assert [w.k for w in written] == [1, 2, 4]
    assert all(w.path.is_file() and w.max_abs_error < 1e-4 for w in written)
    after = {k: _run(net, torch.ones(1, *SHAPE), k) for k in (1, 4)}
    assert all(torch.equal(before[k], after[k]) for k in before)  # exporting changed nothing
    assert not net.training


def test_cached_corner_follows_weight_changes():
    net = convert(coupled(), SHAPE, groups=4)
    x = torch.randn(1, *SHAPE)
    first = _run(net, x, 2)
    with torch.no_grad():
        net.tensor("side", "weight").mul_(2.0)
    assert not torch.equal(_run(net, x, 2), first)
    assert np.isfinite(first.numpy()).all()


class ScaleOnTheLeft(nn.Module):
    """``scale * x`` (ConvNeXt's layer scale) then a residual add: the product's axis is x's, not the scale's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.scale = nn.Parameter(torch.linspace(0.5, 2.0, 8).view(8, 1, 1))
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        y = self.conv(x)
        return self.head((self.scale * y + y).mean((2, 3)))


def test_a_constant_on_the_left_of_a_product_keeps_the_tensor_channel_axis():
    module = ScaleOnTheLeft().eval()
    net = convert(module, (3, 16, 16), groups=2)
    assert check_equivalence(module, net, (3, 16, 16)) < 1e-6
