"""The daemon serving a converted model (`governor convert`): infer runs the k it chose, and hello says
what the model takes, with no accuracy claimed for a file that has measured none."""

import numpy as np
import pytest
import torch
from daemon_build import serving
from governor_client import Client, GovernorError

from governor.core.modelmeta import IMAGENET, TrainingInfo
from governor.runtime.converter import convert
from governor.runtime.modelfile import describe_converted, load_model, save_model
from tests.runtime.convert_nets import coupled

SHAPE = (3, 16, 16)


def _converted(path, mean_std=IMAGENET, connectivity="slimmable"):
    torch.manual_seed(0)
    net = convert(coupled().eval(), SHAPE, groups=4, mean=mean_std[0], std=mean_std[1], source="app.nets:coupled",
                  connectivity=connectivity)
    info = TrainingInfo(dataset="converted:app.nets:coupled", train_samples=0, val_samples=0, epochs_per_stage=0,
                        batch_size=1, lr=0.0, weight_decay=0.0, seed=0, seconds=0.0)
    save_model(path, net, describe_converted(net, classes=[f"c{i}" for i in range(10)], info=info))
    return path


@pytest.mark.parametrize("connectivity", ["slimmable", "nested"])
def test_infer_on_a_converted_model_runs_the_chosen_k_and_reports_its_interface(tmp_path, connectivity):
    model = _converted(tmp_path / "coupled.dgm", connectivity=connectivity)
    x = np.random.default_rng(1).random((2, *SHAPE), dtype=np.float32)
    with serving(tmp_path / "root", model) as (_d, pair, _meta), \
            Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        hello = c.hello
        res = c.infer(x, deadline_ms=5000)
        advice = c.advise(deadline_ms=5000)
    (spec,) = hello.interface.inputs
    assert spec.shape == SHAPE and spec.value_range == (0.0, 1.0)
    assert (spec.mean, spec.std) == IMAGENET  # the shortest decimals, as the user wrote them
    assert "0..1" in spec.scale and "ImageNet" in spec.scale
    assert hello.interface.outputs[0].classes == tuple(f"c{i}" for i in range(10))
    # nothing measured an accuracy: the replies say unknown rather than 0 %
    assert res.predicted.accuracy is None and res.measured.accuracy is None and advice.predicted.accuracy is None
    net = load_model(model).net
    net.set_active_groups(res.point.k)
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(res.output, expected, rtol=1e-5, atol=1e-6)


def test_a_converted_model_without_normalisation_says_inputs_go_in_as_the_module_took_them(tmp_path):
    model = _converted(tmp_path / "plain.dgm", mean_std=((0.0,) * 3, (1.0,) * 3))
    with serving(tmp_path / "root", model) as (_d, pair, _meta), \
            Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        (spec,) = c.hello.interface.inputs
    assert spec.value_range is None and "app.nets:coupled takes as its input" in spec.scale


def test_without_accuracies_max_accuracy_takes_the_most_groups_and_a_floor_is_refused(tmp_path):
    model = _converted(tmp_path / "coupled.dgm")
    with serving(tmp_path / "root", model) as (_d, pair, _meta), \
            Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        largest = c.advise(deadline_ms=5000, objective="max_accuracy")  # it used to be k = 1: all "0 %"
        with pytest.raises(GovernorError) as refused:
            c.advise(deadline_ms=5000, min_accuracy=0.5)
        still = c.advise(deadline_ms=5000)  # and it keeps serving
    assert largest.point.k == 4 and largest.predicted.accuracy is None and 1 <= still.point.k <= 4
    assert refused.value.code == "bad_request" and "no measured accuracies" in str(refused.value)


def test_done_when_a_zoo_resnet18_with_weights_converted_at_224_is_served_and_k_g_is_the_module(tmp_path):
    # issue 17: `governor convert PKG.MODULE:resnet18 --weights W.pt --input-shape 3,224,224 --groups 4
    # --connectivity slimmable --out r18.dgm`, then `governor serve --model r18.dgm` answers infer
    from governor.cli.main import main as governor
    from governor.runtime.zoo.resnet import resnet18
    from tests.runtime.convert_nets import randomise_batch_norm

    torch.manual_seed(0)
    module = randomise_batch_norm(resnet18())
    torch.save(module.state_dict(), tmp_path / "W.pt")
    out = tmp_path / "r18.dgm"
    assert governor(["convert", "governor.runtime.zoo.resnet:resnet18", "--weights", str(tmp_path / "W.pt"),
                     "--input-shape", "3,224,224", "--groups", "4", "--connectivity", "slimmable",
                     "--out", str(out)]) == 0
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with serving(tmp_path / "root", out) as (_d, pair, _meta), \
            Client(transport=pair.connect(), timeout_ms=60000, retries=0) as c:
        res = c.infer(x, deadline_ms=60000, objective="max_accuracy")
    assert res.point.k == 4 and res.output.shape == (1, 1000)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    assert np.abs(res.output - expected).max() <= 1e-4 * np.abs(expected).max()


def test_a_fine_tuned_converted_model_reports_the_raw_range_of_its_training_data():
    from governor.daemon.replies import model_interface

    net = convert(coupled().eval(), SHAPE, groups=2)
    info = TrainingInfo(dataset="digits (fine-tuned converted:app.nets:coupled)", train_samples=1, val_samples=1,
                        epochs_per_stage=1, batch_size=1, lr=0.0, weight_decay=0.0, seed=0, seconds=0.0)
    meta = describe_converted(net, classes=[str(i) for i in range(10)], info=info, accuracies=[0.5, 0.9])
    (spec,) = model_interface(meta, max_batch=8).inputs
    assert spec.value_range == (0.0, 16.0) and "0..16" in spec.scale
