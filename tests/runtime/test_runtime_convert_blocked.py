"""Grouped and nested connectivity for converted networks: what each k runs, what each stage trains."""

import pytest
import torch
from torch import nn

from governor.core.modelmeta import TrainingInfo
from governor.runtime.converter import ConversionError, convert
from governor.runtime.data import fit_to_shape, load_digits_split
from governor.runtime.graphblocks import owner
from governor.runtime.modelfile import describe_converted, load_model, save_model
from governor.runtime.training import TrainConfig, train_incremental
from tests.runtime.convert_nets import coupled

SHAPE = (3, 8, 8)


def _outputs(net, x, k):
    net.eval()
    net.set_active_groups(k)
    with torch.no_grad():
        return net(x).clone()


@pytest.mark.parametrize("connectivity", ["nested", "grouped"])
def test_k_never_reads_an_entry_a_later_group_owns(connectivity):
    # residual add, concat, depthwise, SE gate, split, grouped conv, shuffle and a layer scale: every
    # entry owned by a group > k (or by none) may be overwritten without changing the k output
    net = convert(coupled(), SHAPE, groups=4, connectivity=connectivity)
    x = torch.randn(3, *SHAPE)
    for k in range(1, 4):
        before = _outputs(net, x, k)
        state = {name: t.clone() for name, t in net.state_dict().items()}
        with torch.no_grad():
            for node in net.spec.nodes:
                source = net.spec.nodes[[n.name for n in net.spec.nodes].index(node.inputs[0])].active \
                    if node.inputs else None
                for name in node.tensors:
                    if name != "index":
                        later = torch.from_numpy(owner(connectivity, node, name, source))
                        net.tensor(node.name, name)[(later > k) | (later == 0)] = 3.0
        assert torch.allclose(_outputs(net, x, k), before, atol=1e-6), k
        net.load_state_dict(state)


def test_grouped_runs_fewer_blocks_than_nested_and_nested_than_slimmable():
    nets = {c: convert(coupled(), SHAPE, groups=4, connectivity=c) for c in ("slimmable", "nested", "grouped")}
    macs = {c: [sum(layer.macs for layer in net.layer_costs(k)) for k in range(1, 5)] for c, net in nets.items()}
    params = {c: [net.params_at(k) for k in range(1, 5)] for c, net in nets.items()}
    assert macs["grouped"][0] == macs["nested"][0] == macs["slimmable"][0]  # k = 1 is one block everywhere
    for k in range(1, 4):
        assert macs["grouped"][k] < macs["nested"][k] < macs["slimmable"][k]
        assert params["grouped"][k] < params["nested"][k] < params["slimmable"][k]
    for c in ("nested", "grouped"):  # the parameters counted at k are exactly the entries groups 1..k own
        owned = [sum(int(mask.sum()) for j in range(1, k + 1) for _p, mask in nets[c].owned_parameters(j))
                 for k in range(1, 5)]
        assert owned == params[c], c
    # the counted MACs are what torch runs
    from torch.utils.flop_counter import FlopCounterMode

    net = nets["nested"]
    net.set_active_groups(3)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, *SHAPE))
    counted = sum(layer.macs for layer in net.layer_costs(3))
    assert counter.get_total_flops() // 2 == counted


def test_nested_stages_train_only_their_group_and_finished_groups_never_change(tmp_path):
    split = fit_to_shape(load_digits_split(), SHAPE)
    net = convert(coupled(), SHAPE, groups=3, connectivity="nested")
    x = torch.from_numpy(split.val.x[:16])
    seen = {}
    config = TrainConfig(arch="graph", groups=3, connectivity="nested", epochs=1, batch_size=64, lr=1e-2,
                         weight_decay=1e-4)
    trained = train_incremental(config, split, net=net, threads=1,
                                on_stage_end=lambda n, k: seen.setdefault(k, _outputs(n, x, k)))
    assert sorted(seen) == [1, 2, 3]  # nested trains every stage, k = G included
    for k, out in seen.items():
        assert torch.equal(_outputs(trained.net, x, k), out)
    # batch-norm statistics of group 1 are those stage 1 left (stage 2 and 3 ran them in eval mode)
    assert len(trained.accuracies) == 3
    path = tmp_path / "n.dgm"
    info = TrainingInfo(dataset="digits", train_samples=1, val_samples=1, epochs_per_stage=1, batch_size=64,
                        lr=1e-2, weight_decay=0.0, seed=0, seconds=0.0)
    save_model(path, trained.net, describe_converted(trained.net, classes=[str(i) for i in range(10)], info=info,
                                                     accuracies=trained.accuracies))
    loaded = load_model(path)
    assert loaded.meta.connectivity == "nested" and loaded.meta.levels[1].layers[1].connectivity == "nested"
    for k in (1, 3):
        assert torch.equal(_outputs(loaded.net, x, k), seen[k])


def test_nested_batch_norm_of_finished_groups_keeps_its_statistics():
    split = fit_to_shape(load_digits_split(), SHAPE)
    net = convert(coupled(), SHAPE, groups=2, connectivity="nested")
    bn = net.spec.nodes[[n.op for n in net.spec.nodes].index("batch_norm")]
    first = bn.active[0]
    stats = {}

    def record(n, k):
        stats[k] = n.tensor(bn.name, "running_mean").clone()

    config = TrainConfig(arch="graph", groups=2, connectivity="nested", epochs=1, batch_size=64, lr=1e-2,
                         weight_decay=0.0)
    train_incremental(config, split, net=net, threads=1, on_stage_end=record)
    assert torch.equal(stats[2][:first], stats[1][:first])
    assert not torch.equal(stats[2][first:], stats[1][first:])  # group 2's own statistics did train


class LayerNormOverChannels(nn.Module):
    """ConvNeXt's LayerNorm2d: permute to channels last, normalise over channels, permute back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.head(x.mean((2, 3)))


def test_layer_norm_over_channels_is_slimmable_only_and_the_refusal_names_the_node():
    module = LayerNormOverChannels().eval()
    convert(module, SHAPE, groups=2)  # slimmable: fine
    with pytest.raises(ConversionError, match=r"node 'norm' \(layer_norm\).*--connectivity slimmable"):
        convert(module, SHAPE, groups=2, connectivity="nested")


def test_cli_converts_nested_and_refuses_a_layer_norm_network_as_grouped(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "mynets.py").write_text(
        f"import sys\nsys.path.insert(0, {str(repo)!r})\nfrom tests.runtime.convert_nets import Coupled\n"
        "from tests.runtime.test_runtime_convert_blocked import LayerNormOverChannels\n")

    def governor(*args):
        return subprocess.run([sys.executable, "-m", "governor", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    done = governor("convert", "mynets:Coupled", "--input-shape", "3,8,8", "--groups", "2", "--connectivity",
                    "nested", "--out", "n.dgm")
    assert done.returncode == 0, done.stderr
    assert "fine-tune it before serving" in done.stdout and "G=2, nested" in done.stdout
    assert load_model(tmp_path / "n.dgm").meta.connectivity == "nested"
    refused = governor("convert", "mynets:LayerNormOverChannels", "--input-shape", "3,8,8", "--connectivity",
                       "grouped", "--out", "g.dgm")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "node 'norm' (layer_norm)" in refused.stderr and not (tmp_path / "g.dgm").exists()
