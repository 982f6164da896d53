"""The torch-only zoo against torchvision 0.28.0: keys, shapes and parameter counts, forwards, fx tracing.

tests/runtime/fixtures/zoo_torchvision.json (tools/zoo_fixture.py) holds torchvision's own numbers;
networks are built on the meta device, so the big ones cost nothing. One real forward per family runs
at a small input (64x64; inception_v3 needs at least 75x75).
"""

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.fx

from governor.runtime.zoo import FAMILY, INPUT_SIZE, MODELS, PARAMS

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "zoo_torchvision.json").read_text())
NUM_CLASSES = 10
# The smallest network of each family, for the real forward passes.
SMALLEST = {family: min((n for n in MODELS if FAMILY[n] == family), key=PARAMS.__getitem__)
            for family in dict.fromkeys(FAMILY.values())}
# torchvision's published googlenet has no auxiliary heads (its weights builder drops them).
PUBLISHED_KWARGS = {"googlenet": {"aux_logits": False}}


def _meta(name, **kwargs):
    with torch.device("meta"):
        return MODELS[name](**kwargs)


def _count(model):
    return sum(p.numel() for p in model.parameters())


def _shape_hash(model):
    lines = "".join(f"{key}:{tuple(t.shape)}\n" for key, t in model.state_dict().items())
    return hashlib.sha256(lines.encode()).hexdigest()


def test_tables_cover_the_same_names():
    names = set(MODELS)
    assert set(FAMILY) == set(INPUT_SIZE) == set(PARAMS) == names
    assert set(FIXTURE) - {"_source"} == names
    assert "torchvision 0.28.0" in FIXTURE["_source"]
    assert INPUT_SIZE["inception_v3"] == (3, 299, 299)
    assert all(size == (3, 224, 224) for name, size in INPUT_SIZE.items() if name != "inception_v3")


@pytest.mark.parametrize("name", list(MODELS))
def test_state_dict_matches_torchvision(name):
    model = _meta(name)
    expected = FIXTURE[name]
    assert _count(model) == expected["params"]
    assert _shape_hash(model) == expected["state_sha256"]
    assert len(list(model.buffers())) == expected["buffers"]
    published = _meta(name, **PUBLISHED_KWARGS.get(name, {}))
    assert _count(published) == PARAMS[name] == expected.get("published_params", expected["params"])


@pytest.mark.parametrize("family", list(SMALLEST))
def test_forward_and_fx_trace_of_each_family(family):
    name = SMALLEST[family]
    torch.manual_seed(0)
    model = MODELS[name](num_classes=NUM_CLASSES).eval()
    side = 75 if name == "inception_v3" else 64
    x = torch.randn(1, 3, side, side)
    traced = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        out = model(x)
        again = traced(x)
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, NUM_CLASSES)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(again, out, rtol=0, atol=0)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_network_traces_in_eval(name):
    graph = torch.fx.symbolic_trace(_meta(name).eval()).graph
    assert any(node.op == "call_module" for node in graph.nodes)


@pytest.mark.parametrize(("name", "fields"), [("googlenet", ("logits", "aux_logits2", "aux_logits1")),
                                              ("inception_v3", ("logits", "aux_logits"))])
def test_auxiliary_heads_answer_only_in_training(name, fields):
    model = _meta(name, num_classes=NUM_CLASSES).train()
    side = 299 if name == "inception_v3" else 224
    out = model(torch.empty(2, 3, side, side, device="meta"))
    assert out._fields == fields
    assert all(t.shape == (2, NUM_CLASSES) for t in out)
    assert isinstance(model.eval()(torch.empty(2, 3, side, side, device="meta")), torch.Tensor)
    no_aux = _meta(name, num_classes=NUM_CLASSES, aux_logits=False).train()
    assert isinstance(no_aux(torch.empty(2, 3, side, side, device="meta")), torch.Tensor)


def test_stochastic_depth_is_the_identity_in_eval_and_has_no_parameters():
    from governor.runtime.zoo._layers import StochasticDepth

    layer = StochasticDepth(0.5, "row")
    assert list(layer.parameters()) == [] and list(layer.buffers()) == []
    x = torch.randn(8, 4, 2, 2)
    assert layer.eval()(x) is x
    torch.manual_seed(0)
    kept = layer.train()(x)
    per_row = [bool((kept[i] == 0).all()) or torch.allclose(kept[i], 2 * x[i]) for i in range(8)]
    assert all(per_row)


def _torchvision_models():
    try:
        import torchvision.models
    except Exception:  # not installed, or its C extension does not load against this torch
        return None
    return torchvision.models


@pytest.mark.skipif(_torchvision_models() is None, reason="torchvision does not import here")
def test_keys_and_shapes_equal_an_importable_torchvision():
    tvm = _torchvision_models()
    for name in MODELS:
        # torchvision's RegNet derives its widths from tensors with data: it cannot be built on the meta device.
        with torch.device("cpu" if FAMILY[name] == "RegNet" else "meta"):
            ref = getattr(tvm, name)()
        ours = _meta(name)
        assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == \
               [(k, tuple(v.shape)) for k, v in ref.state_dict().items()], name
