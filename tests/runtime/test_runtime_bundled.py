"""The daemon's bundled digits model: trained once, accurate, and honest about its accuracy."""

import pytest
import torch

from governor.core.modelmeta import read_model_meta
from governor.runtime import bundled
from governor.runtime.data import load_digits_split
from governor.runtime.modelfile import load_model
from governor.runtime.training import evaluate


@pytest.mark.slow
def test_default_model_is_trained_once_and_meets_the_accuracy_target(tmp_path, monkeypatch):
    torch.set_num_threads(2)  # the caller's setting; training itself runs single-threaded
    path = bundled.ensure_default_model(tmp_path / "cache")
    assert torch.get_num_threads() == 2
    meta = read_model_meta(path.read_bytes())
    accuracies = [meta.accuracy(k) for k in range(1, meta.groups + 1)]
    assert meta.groups == 4 and accuracies[-1] >= 0.95
    # Non-decreasing in k, with no tolerance: training's stage acceptance ensures it (docs/models.md). Before
    # it, AVX512 kernels gave 97.77 / 98.05 / 98.33 / 98.05 % here: k = 4 one image below k = 3.
    assert accuracies == sorted(accuracies)
    loaded = load_model(path)
    val = load_digits_split(seed=bundled.DEFAULT_CONFIG.seed).val
    assert [evaluate(loaded.net, val, k) for k in range(1, 5)] == accuracies

    stamp = path.stat().st_mtime_ns
    assert bundled.ensure_default_model(tmp_path / "cache") == path
    assert path.stat().st_mtime_ns == stamp  # a usable cached model is not retrained

    retrained = []
    monkeypatch.setattr(bundled, "train_default_model", lambda p: retrained.append(p) or p)
    path.write_bytes(path.read_bytes()[:100])
    bundled.ensure_default_model(tmp_path / "cache")
    assert retrained == [path]
