"""governor.core.modelmeta: cost formulas and metadata validation, without torch."""

import io
import json
import zipfile

import pytest

from governor.core.modelmeta import (
    META_ENTRY,
    ModelFileError,
    conv_out_hw,
    layer_cost,
    parse_model_meta,
    read_model_meta,
)


def meta_dict(groups=2, **overrides):
    levels = []
    for k in range(1, groups + 1):
        layer = layer_cost("conv", kind="conv", connectivity="dense", k=k, in_channels=1, out_channels=4 * k,
                           kernel=(3, 3), padding=1, in_hw=(8, 8))
        levels.append({"k": k, "accuracy": 0.5 + 0.1 * k, "macs": layer.macs, "params": 36 * k,
                       "state_bytes": 160 * k, "layers": [layer.model_dump(mode="json")]})
    meta = {
        "format": "dnn-governor-model", "format_version": 1, "arch": "resnet-small", "widths": [4 * groups],
        "groups": groups, "connectivity": "grouped", "input_shape": [1, 8, 8], "input_mean": [8.0],
        "input_std": [4.0], "classes": ["a", "b"], "total_params": 36 * groups, "total_state_bytes": 160 * groups,
        "training": {"dataset": "digits", "train_samples": 10, "val_samples": 5, "epochs_per_stage": 1,
                     "batch_size": 4, "lr": 0.01, "weight_decay": 0.0, "seed": 0, "seconds": 1.0},
        "levels": levels,
    }
    meta.update(overrides)
    return meta


def test_layer_cost_formulas_per_connectivity():
    common = {"kind": "conv", "k": 3, "in_channels": 12, "out_channels": 24, "kernel": (3, 3), "padding": 1,
              "in_hw": (10, 10)}
    dense = layer_cost("a", connectivity="dense", **common)
    grouped = layer_cost("b", connectivity="grouped", **common)
    nested = layer_cost("c", connectivity="nested", **common)
    assert dense.macs == 24 * 12 * 9 * 100
    assert grouped.macs == 24 * 4 * 9 * 100  # each output group reads its own 4 input channels
    assert nested.macs == 8 * 4 * 9 * 100 * 6  # output group j reads j input groups: 1 + 2 + 3
    assert grouped.weight_bytes == 24 * 4 * 9 * 4
    assert (grouped.input_bytes, grouped.output_bytes) == (12 * 100 * 4, 24 * 100 * 4)
    strided = layer_cost("d", kind="conv", connectivity="dense", k=1, in_channels=3, out_channels=8,
                         kernel=(5, 5), stride=2, padding=2, in_hw=(32, 31))
    assert strided.out_hw == (16, 16)
    assert layer_cost("fc", kind="linear", connectivity="dense", k=2, in_channels=16, out_channels=10,
                      bias=True).weight_bytes == (160 + 10) * 4


def test_conv_out_hw_refuses_inputs_smaller_than_the_kernel():
    assert conv_out_hw((8, 8), (3, 3), 1, 1) == (8, 8)
    with pytest.raises(ValueError, match="too small"):
        conv_out_hw((2, 2), (5, 5), 1, 0)


def test_valid_metadata_answers_per_k_questions():
    meta = parse_model_meta(json.dumps(meta_dict(groups=3)))
    assert [meta.accuracy(k) for k in (1, 2, 3)] == pytest.approx([0.6, 0.7, 0.8])
    assert meta.macs(2) == 8 * 9 * 64
    assert meta.level(3).weight_bytes == 12 * 9 * 4
    assert meta.separate_models_state_bytes == 160 * (1 + 2 + 3)
    with pytest.raises(ValueError, match=r"groups 1\.\.3"):
        meta.level(4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 3}, "version 3 is not supported.*upgrade"),
        ({"format_version": "1"}, "retrain"),
        ({"format": "onnx"}, "not a dnn-governor-model file"),
        ({"widths": [5]}, "not divisible by groups=2"),
        ({"input_mean": [1.0, 2.0]}, "one value per input channel"),
        ({"classes": ["only"]}, "at least 2 classes"),
        ({"connectivity": "dense"}, "connectivity"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_metadata_gets_a_clear_error(change, message):
    with pytest.raises(ModelFileError, match=message):
        parse_model_meta(json.dumps(meta_dict(**change)))


def test_levels_must_cover_every_k_with_sane_accuracy():
    meta = meta_dict(groups=2)
    meta["levels"] = meta["levels"][:1]
    with pytest.raises(ModelFileError, match=r"k = 1\.\.2"):
        parse_model_meta(json.dumps(meta))
    meta = meta_dict(groups=2)
    meta["levels"][0]["accuracy"] = 1.5
    with pytest.raises(ModelFileError, match="accuracy"):
        parse_model_meta(json.dumps(meta))


def test_read_from_zip_bytes_or_stream():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(META_ENTRY, json.dumps(meta_dict()))
    assert read_model_meta(buffer.getvalue()).groups == 2
    buffer.seek(0)
    assert read_model_meta(buffer).classes == ("a", "b")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        parse_model_meta(b"{oops")
    with pytest.raises(ModelFileError, match="truncated/corrupt"):
        read_model_meta(b"plain text")
