"""Training data without torchvision: scikit-learn's bundled digits and CIFAR-10 python batches.

Samples are arrays (N, C, H, W) in the dataset's raw pixel scale (digits float32 0..16, CIFAR uint8
0..255, kept as uint8 so 50,000 images take 150 MB instead of 600 MB; batches become float32);
the network normalises inside itself with the training split's per-channel mean and std, so callers
feed raw pixels. CIFAR-10 batches are pickles: they are read with an unpickler that only admits the
numpy reconstruction functions, so a tampered batch file cannot run code.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),  # protocol-2 bytes written by Python 3
}


class DatasetError(ValueError):
    """The dataset argument or files are unusable; the message says what to do."""


@dataclass(frozen=True)
class Dataset:
    """Labelled samples: x float32 or uint8 (N, C, H, W) raw pixels, y int64 (N,)."""

    name: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x.shape[1:]
        return (int(c), int(h), int(w))

    def subset(self, index: np.ndarray) -> Dataset:
        return Dataset(self.name, self.x[index], self.y[index], self.classes)


@dataclass(frozen=True)
class Split:
    """Training and validation parts of one dataset, plus the train part's per-channel statistics."""

    train: Dataset
    val: Dataset

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        mean = self.train.x.mean(axis=(0, 2, 3), dtype=np.float64)
        std = np.maximum(self.train.x.std(axis=(0, 2, 3), dtype=np.float64), 1e-6)
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_digits_split(val_fraction: float = 0.2, seed: int = 0) -> Split:
    """scikit-learn's 1797 8x8 digits, split per class (stratified) with a seeded permutation."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    data = Dataset("digits", bunch.images.astype(np.float32)[:, None], bunch.target.astype(np.int64),
                   tuple(str(i) for i in range(10)))
    return stratified_split(data, val_fraction, seed)


def stratified_split(data: Dataset, val_fraction: float, seed: int) -> Split:
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    val_parts = []
    for label in np.unique(data.y):
        members = rng.permutation(np.flatnonzero(data.y == label))
        val_parts.append(members[: max(1, round(len(members) * val_fraction))])
    val_index = np.sort(np.concatenate(val_parts))
    train_index = np.setdiff1d(np.arange(len(data.y)), val_index)
    return Split(data.subset(train_index), data.subset(val_index))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        return data.reshape(-1, 3, 32, 32), labels
    except (OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as exc:
        raise DatasetError(f"{path} is not a CIFAR-10 python batch ({exc}); re-extract cifar-10-python.tar.gz") from exc


def load_cifar10_split(directory: Path) -> Split:
    """``data_batch_1..5`` for training and ``test_batch`` for validation (the standard python layout)."""
    directory = Path(directory)
    train_files = sorted(directory.glob("data_batch_*"))
    test_file = directory / "test_batch"
    if not train_files or not test_file.is_file():
        raise DatasetError(
            f"{directory} has no data_batch_* and test_batch files; point --dataset cifar10:DIR at the "
            "extracted cifar-10-batches-py directory"
        )
    parts = [_read_cifar_batch(p) for p in train_files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    vx, vy = _read_cifar_batch(test_file)
    return Split(Dataset("cifar10", x, y, CIFAR10_CLASSES), Dataset("cifar10", vx, vy, CIFAR10_CLASSES))


def load_split(spec: str, *, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """``digits`` or ``cifar10:DIR``."""
    if spec == "digits":
        return load_digits_split(val_fraction, seed)
    if spec.startswith("cifar10:") and len(spec) > len("cifar10:"):
        return load_cifar10_split(Path(spec[len("cifar10:") :]).expanduser())
    raise DatasetError(f"unknown dataset {spec!r}; use 'digits' or 'cifar10:DIR'")


def as_float_batch(x: np.ndarray) -> np.ndarray:
    """A contiguous float32 copy (or view) of a batch, for torch."""
    return np.ascontiguousarray(x, dtype=np.float32)


def augment(x: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random horizontal flips and translations by up to ``pad`` pixels (zero fill), for CIFAR."""
    n, _, h, w = x.shape
    flipped = np.where(rng.random((n,))[:, None, None, None] < 0.5, x[..., ::-1], x)
    padded = np.pad(flipped, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    return np.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
