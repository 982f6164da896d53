"""Fine-tuning a converted network: stages k < G train their own batch norm only; nothing else moves."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from governor.core.modelmeta import TrainingInfo
from governor.runtime.converter import convert
from governor.runtime.data import fit_to_shape, load_digits_split, load_split
from governor.runtime.modelfile import describe_converted, load_model, save_model
from governor.runtime.training import TrainConfig, train_incremental
from tests.runtime.convert_nets import coupled

SHAPE = (3, 8, 8)
INFO = TrainingInfo(dataset="none", train_samples=0, val_samples=0, epochs_per_stage=0, batch_size=1, lr=0.0,
                    weight_decay=0.0, seed=0, seconds=0.0)


def _outputs(net, x, k):
    net.eval()
    net.set_active_groups(k)
    with torch.no_grad():
        return net(x).clone()


def test_stages_below_g_train_private_batch_norm_and_k_equal_g_stays_bit_for_bit():
    split = fit_to_shape(load_digits_split(), SHAPE)
    net = convert(coupled(), SHAPE, groups=3)
    x = torch.from_numpy(split.val.x[:16].astype(np.float32))
    before = {name: t.clone() for name, t in net.state_dict().items()}
    full = _outputs(net, x, 3)
    after_stage = {}
    config = TrainConfig(arch="graph", groups=3, connectivity="slimmable", epochs=1, batch_size=64, lr=1e-2,
                         weight_decay=0.0)
    trained = train_incremental(config, split, net=net, threads=1,
                                on_stage_end=lambda n, k: after_stage.setdefault(k, _outputs(n, x, k)))
    assert sorted(after_stage) == [1, 2]  # no stage for k = G
    changed = {name for name, t in trained.net.state_dict().items() if not torch.equal(t, before[name])}
    assert changed and all(name.rsplit(".", 1)[-1].startswith("k_") for name in changed)
    assert torch.equal(_outputs(trained.net, x, 3), full)
    for k, seen in after_stage.items():  # a finished stage never changes again
        assert torch.equal(_outputs(trained.net, x, k), seen)
    assert all(p.requires_grad for p in trained.net.parameters())  # flags restored
    assert len(trained.accuracies) == 3 and all(0.0 <= a <= 1.0 for a in trained.accuracies)


def _image_folder(root, classes=("cats", "dogs"), per_class=6):
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, size=(20, 24, 3), dtype=np.uint8) + np.uint8(120 * c)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    (root / "cats" / "notes.txt").write_text("not an image")


def test_imagefolder_is_resized_and_cropped_to_the_model_input(tmp_path):
    _image_folder(tmp_path / "data")
    split = load_split(f"imagefolder:{tmp_path / 'data'}", input_shape=(3, 16, 16))
    assert split.train.x.shape[1:] == (3, 16, 16) and split.train.x.dtype == np.uint8
    assert split.train.classes == ("cats", "dogs")
    assert len(split.train.y) + len(split.val.y) == 12


def _governor(*args, cwd):
    return subprocess.run([sys.executable, "-m", "governor", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_convert_fine_tune_and_export_a_users_module(tmp_path):
    (tmp_path / "mynets.py").write_text(
        f"import sys\nsys.path.insert(0, {str(_repo())!r})\nfrom tests.runtime.convert_nets import Coupled\n"
        "def build(num_classes=10):\n    return Coupled(num_classes)\n")
    torch.manual_seed(0)
    from tests.runtime.convert_nets import Coupled
    weights = Coupled(2).state_dict()
    torch.save(weights, tmp_path / "w.pt")
    _image_folder(tmp_path / "data")
    done = _governor("convert", "mynets:build", "--arg", "num_classes=2", "--weights", "w.pt", "--input-shape",
                     "3,16,16", "--groups", "2", "--out", "m.dgm", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "k = G matches mynets:build" in done.stdout
    again = _governor("convert", "mynets:build", "--input-shape", "3,16,16", "--out", "m.dgm", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
    mismatch = _governor("convert", "mynets:build", "--weights", "w.pt", "--input-shape", "3,16,16", "--out", "x.dgm",
                         cwd=tmp_path)
    assert mismatch.returncode == 2 and "does not fit the model" in mismatch.stderr
    tuned = _governor("train", "--from", "m.dgm", "--dataset", f"imagefolder:{tmp_path / 'data'}", "--epochs", "1",
                      "--batch-size", "4", "--out", "t.dgm", cwd=tmp_path)
    assert tuned.returncode == 0, tuned.stderr
    original, fine = load_model(tmp_path / "m.dgm").net, load_model(tmp_path / "t.dgm").net
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(_outputs(original, x, 2), _outputs(fine, x, 2))
    wrong = _governor("train", "--from", "m.dgm", "--dataset", "digits", "--out", "d.dgm", cwd=tmp_path)
    assert wrong.returncode == 2 and "num_classes=10" in wrong.stderr
    exported = _governor("export", "t.dgm", "--onnx", "onnx", "--k", "1,2", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == ["t_k1.onnx", "t_k2.onnx"]


def test_converted_model_costs_are_in_the_file(tmp_path):
    net = convert(coupled(), SHAPE, groups=2)
    path = tmp_path / "m.dgm"
    save_model(path, net, describe_converted(net, classes=[str(i) for i in range(10)], info=INFO))
    meta = load_model(path).meta
    assert meta.connectivity == "slimmable" and meta.arch == "graph"
    assert [lv.k for lv in meta.levels] == [1, 2] and meta.levels[0].macs < meta.levels[1].macs
    depthwise = next(layer for layer in meta.levels[1].layers if layer.name == "depthwise")
    assert depthwise.conv_groups == depthwise.in_channels  # a depthwise cost is per channel, not dense


def _repo():
    from pathlib import Path

    return Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
