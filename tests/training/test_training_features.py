"""perf4sight's analytic training features: hand-computed values, batch scaling, network sums."""

import numpy as np
import pytest

from governor.core.modelmeta import layer_cost
from governor.core.training.features import (
    FEATURE_NAMES,
    LayerShape,
    NetworkShape,
    layer_features,
    network_features,
    network_from_costs,
)

# ic=4, oc=8, 3x3 kernel, 8x8 input, pad 1 -> op 8, two groups -> effIc 2, batch 2.
LAYER = LayerShape("conv", 4, 8, (8, 8), (3, 3), stride=1, padding=1, groups=2)


def _named(layer: LayerShape, batch: int) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES[2:], layer_features(layer, batch), strict=True))


def test_hand_computed_counts_match_perf4sight_formulas():
    f = _named(LAYER, 2)
    assert f["tensor-weights"] == 8 * 2 * 9  # oc * effIc * k^2
    assert f["tensor-weight-grad"] == 2 * 144  # bs * weights
    assert f["tensor-ifm"] == 2 * 2 * 4 * 64  # 2 * bs * ic * ip^2
    assert f["tensor-ofm"] == 2 * 2 * 8 * 64
    assert f["gemm-i2c-fwd"] == 2 * 64 * 9 * 4  # bs * op^2 * k^2 * ic
    assert f["gemm-i2c-bwd-w"] == 2 * 64 * 9 * 2  # bs * op^2 * k^2 * effIc
    assert f["gemm-ops-fwd"] == 2 * 8 * 64 * 9 * 2  # bs * oc * op^2 * k^2 * effIc
    assert f["gemm-ops-bwd"] == 2 * 4 * 64 * 9 * 8  # bs * ic * ip^2 * k^2 * oc
    assert f["gemm-ops-sum"] == 2 * f["gemm-ops-fwd"] + f["gemm-ops-bwd"]
    assert f["fft-ifm-fwd"] == 8 * 9 * 2 * 4  # ip(1+ip) * bs * ic
    assert f["fft-ops-fwd"] == pytest.approx(64 * 3 * (2 * 4 + 2 * 8 + 8 * 2) + 2 * 8 * 4 * 64)
    # Winograd F(4,3): 6x6 tiles, ceil(8/4)^2 = 4 tiles, one 3x3 filter tile.
    assert f["wino43-fwd"] == 3 * 2 * 8 * 36 * 4
    assert f["wino43-ops-fwd"] == 2 * 8 * 2 * 4 * 1 * 36
    # F(3,2): 4x4 tiles, ceil(8/3)^2 = 9 tiles, ceil(3/2)^2 = 4 filter tiles.
    assert f["wino32-ops-fwd"] == 2 * 8 * 2 * 9 * 4 * 16


def test_output_size_and_stride():
    layer = LayerShape("conv", 3, 16, (32, 32), (5, 5), stride=2, padding=2)
    assert layer.out_hw == (16, 16)
    assert _named(layer, 1)["tensor-ofm"] == 2 * 16 * 256


def test_batch_dependent_counts_scale_linearly_and_weights_do_not():
    one, four = _named(LAYER, 1), _named(LAYER, 4)
    assert four["tensor-weights"] == one["tensor-weights"]
    assert four["fft-weights-fwd"] == one["fft-weights-fwd"]
    for name in ("tensor-ifm", "gemm-i2c-fwd", "gemm-ops-sum", "wino32-bwd-x", "tensor-weight-grad"):
        assert four[name] == pytest.approx(4 * one[name])


def test_network_vector_is_the_layer_sum_plus_batch_and_params():
    fc = LayerShape("linear", 512, 10)
    net = NetworkShape((LAYER, fc), params=123_456)
    vec = network_features(net, 8)
    assert len(vec) == len(FEATURE_NAMES) and len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert vec[0] == 8 and vec[1] == 123_456
    np.testing.assert_allclose(vec[2:], layer_features(LAYER, 8) + layer_features(fc, 8))


def test_a_linear_layer_counts_as_a_1x1_convolution():
    f = _named(LayerShape("linear", 512, 10), 4)
    assert f["tensor-weights"] == 5120 and f["gemm-ops-fwd"] == 4 * 5120


def test_model_metadata_costs_give_the_same_shapes_including_nested_groups():
    grouped = layer_cost("c", kind="conv", connectivity="grouped", k=2, in_channels=8, out_channels=16,
                         kernel=(3, 3), padding=1, in_hw=(8, 8))
    nested = layer_cost("n", kind="conv", connectivity="nested", k=3, in_channels=12, out_channels=12,
                        kernel=(3, 3), padding=1, in_hw=(8, 8))
    dense = layer_cost("d", kind="linear", connectivity="dense", k=2, in_channels=64, out_channels=10, bias=True)
    net = network_from_costs([grouped, nested, dense], params=999)
    assert net.layers[0] == LayerShape("conv", 8, 16, (8, 8), (3, 3), 1, 1, groups=2.0)
    # nested: output group j reads j input groups; weights = og*ig*k^2*k(k+1)/2 = 4*4*9*6
    assert net.layers[1].weights == pytest.approx(4 * 4 * 9 * 6)
    assert net.layers[2].weights == 640 and net.params == 999


@pytest.mark.parametrize("bad", [
    dict(kind="pool", in_channels=3, out_channels=3),
    dict(kind="conv", in_channels=0, out_channels=3),
    dict(kind="conv", in_channels=4, out_channels=4, groups=8),
    dict(kind="conv", in_channels=4, out_channels=4, in_hw=(2, 2), kernel=(5, 5)),
])
def test_invalid_layers_are_refused(bad):
    with pytest.raises(ValueError):
        LayerShape(**bad)


def test_batch_and_empty_network_are_checked():
    with pytest.raises(ValueError, match="batch"):
        layer_features(LAYER, 0)
    with pytest.raises(ValueError, match="no convolution"):
        NetworkShape((), params=0)
