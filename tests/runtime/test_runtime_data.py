"""Datasets without torchvision: digits split, CIFAR-10 python batches (read safely), augmentation."""

import os
import pickle

import numpy as np
import pytest

from governor.runtime.data import (
    CIFAR10_CLASSES,
    DatasetError,
    augment,
    load_cifar10_split,
    load_digits_split,
    load_split,
)


def test_digits_split_is_stratified_disjoint_and_seeded():
    split = load_digits_split(val_fraction=0.2, seed=4)
    assert split.train.input_shape == (1, 8, 8)
    assert len(split.train.y) + len(split.val.y) == 1797
    assert 0.19 < len(split.val.y) / 1797 < 0.21
    assert set(np.bincount(split.val.y)) <= {35, 36, 37}  # every digit ~20 %
    train_rows = {row.tobytes() for row in split.train.x}
    assert sum(row.tobytes() in train_rows for row in split.val.x) < 5  # digits has a few exact duplicates
    again = load_digits_split(val_fraction=0.2, seed=4)
    assert np.array_equal(again.val.y, split.val.y) and np.array_equal(again.val.x, split.val.x)
    assert not np.array_equal(load_digits_split(seed=5).val.x, split.val.x)
    mean, std = split.channel_stats()
    assert mean[0] == pytest.approx(split.train.x.mean(), rel=1e-6) and std[0] > 0


def test_cifar10_directory_in_python_batch_format(cifar_dir):
    split = load_split(f"cifar10:{cifar_dir}")
    assert split.train.x.shape == (10, 3, 32, 32) and split.val.x.shape == (5, 3, 32, 32)
    assert split.train.x.dtype == np.uint8 and split.train.x.max() == 255  # 4x smaller than float32
    assert list(split.train.y) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 6]
    assert split.train.x[0, 1, 0, 0] == 1024 % 256  # channel-major rows: R plane, then G, then B
    assert split.val.classes == CIFAR10_CLASSES


def test_cifar10_errors_say_what_to_do(tmp_path):
    with pytest.raises(DatasetError, match="cifar-10-batches-py"):
        load_cifar10_split(tmp_path)
    (tmp_path / "data_batch_1").write_bytes(pickle.dumps(os.system))  # would run code if unpickled freely
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="refusing to load"):
        load_cifar10_split(tmp_path)
    with pytest.raises(DatasetError, match="'digits', 'cifar10:DIR' or 'imagefolder:DIR'"):
        load_split("mnist")


def test_augment_flips_and_shifts_but_keeps_pixels():
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    out = augment(x, np.random.default_rng(0), pad=2)
    assert out.shape == x.shape
    assert not np.array_equal(out, x)
    nonzero = out[out != 0]
    assert set(nonzero.tolist()) <= set(x.ravel().tolist())
    flipped_only = augment(x, np.random.default_rng(1), pad=0)
    for got, original in zip(flipped_only, x, strict=True):
        assert np.array_equal(got, original) or np.array_equal(got, original[..., ::-1])
