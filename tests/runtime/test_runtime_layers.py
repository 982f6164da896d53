"""Group-pruned layers and networks: in-place k switching, group isolation, and costs that match execution."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from governor.runtime.layers import GroupConv2d, GroupState
from governor.runtime.nets import ARCHS, build_net, scaled_widths


def make_net(arch, connectivity="grouped", shape=(1, 8, 8), groups=4, width=0.25, classes=10, seed=0):
    widths, fcs = scaled_widths(arch, width, groups)
    return build_net(
        arch, groups=groups, connectivity=connectivity, input_shape=shape, classes=classes, widths=widths,
        fc_widths=fcs, mean=[0.5] * shape[0], std=[2.0] * shape[0], gen=torch.Generator().manual_seed(seed),
    ).eval()


def storage(net):
    return {name: (t.data_ptr(), t.numel()) for name, t in [*net.named_parameters(), *net.named_buffers()]}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("connectivity", ["grouped", "nested"])
def test_switching_k_keeps_every_tensor_in_place(arch, connectivity):
    net = make_net(arch, connectivity)
    before = storage(net)
    x = torch.rand(2, 1, 8, 8) * 16
    with torch.inference_mode():
        for k in (4, 1, 3, 2, 4):
            net.set_active_groups(k)
            assert net(x).shape == (2, 10)
    assert storage(net) == before


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("connectivity", ["grouped", "nested"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 20, 28)])
def test_traced_macs_equal_what_torch_executes(arch, connectivity, shape):
    net = make_net(arch, connectivity, shape, classes=7)
    previous = None
    for k in range(1, 5):
        net.set_active_groups(k)
        with FlopCounterMode(display=False) as counter, torch.inference_mode():
            assert net(torch.rand(1, *shape)).shape == (1, 7)
        macs = sum(c.macs for c in net.layer_costs(k))
        assert counter.get_total_flops() == 2 * macs
        assert previous is None or macs > previous
        previous = macs


@pytest.mark.parametrize("connectivity", ["grouped", "nested"])
def test_k_subnet_ignores_the_weights_of_later_groups(connectivity):
    net = make_net("alexnet-cifar", connectivity, (3, 16, 16))
    x = torch.rand(3, 3, 16, 16)
    net.set_active_groups(2)
    with torch.inference_mode():
        reference = net(x)
        for group in net.grouped_tensors():
            flat = group.tensor.view(-1)
            flat[group.offsets[2] :] = 1e3  # groups 3 and 4 become garbage
        assert torch.equal(net(x), reference)
        net.set_active_groups(3)
        assert not torch.allclose(net(x), reference)


def test_grouped_isolates_input_groups_and_nested_reads_earlier_ones():
    x = torch.rand(1, 8, 5, 5)
    bumped = x.clone()
    bumped[:, :4] += 1.0  # change input group 1 only
    for connectivity, group2_changes in (("grouped", False), ("nested", True)):
        conv = GroupConv2d(8, 6, 3, padding=1, state=GroupState(2), connectivity=connectivity)
        with torch.no_grad():
            delta = conv(bumped) - conv(x)
        assert bool(delta[:, :3].abs().max() > 0)
        assert bool(delta[:, 3:].abs().max() > 0) is group2_changes


@pytest.mark.parametrize("connectivity", ["grouped", "nested"])
def test_each_group_owns_a_contiguous_prefix_of_every_tensor(connectivity):
    net = make_net("resnet-small", connectivity)
    names = {name for name, _ in [*net.named_parameters(), *net.named_buffers()]}
    grouped = net.grouped_tensors()
    assert {g.name for g in grouped} == names - {"input_mean", "input_std"}
    for g in grouped:
        assert g.offsets[0] == 0 and g.offsets[-1] == g.tensor.numel()
        assert list(g.offsets) == sorted(g.offsets)


def test_k_out_of_range_is_refused_and_state_kept():
    net = make_net("resnet-small")
    net.set_active_groups(2)
    for bad in (0, 5):
        with pytest.raises(ValueError, match=r"groups 1\.\.4"):
            net.set_active_groups(bad)
    assert net.active_groups == 2


def test_widths_must_split_into_groups():
    with pytest.raises(ValueError, match="divisible by groups=3"):
        GroupConv2d(8, 6, state=GroupState(3), connectivity="grouped")
    with pytest.raises(ValueError, match="unknown architecture"):
        scaled_widths("vgg", 1.0, 4)
    assert scaled_widths("alexnet-cifar", 1.0, 4) == ((64, 192, 384, 256, 256), (1024, 1024))
    assert all(w % 3 == 0 for w in scaled_widths("resnet-small", 0.3, 3)[0])
