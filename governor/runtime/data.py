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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def _read_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """torchvision's evaluation transform: shorter side to H*256/224, centre crop H x W; uint8 (C, H, W)."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    try:
        with Image.open(path) as image:
            image = image.convert("L" if c == 1 else "RGB")
            scale = max(h, w) * 256 / 224 / min(image.size)
            size = (max(w, round(image.size[0] * scale)), max(h, round(image.size[1] * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
            left, top = (size[0] - w) // 2, (size[1] - h) // 2
            array = np.asarray(image.crop((left, top, left + w, top + h)), dtype=np.uint8)
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"{path} is not a readable image ({exc}); remove it from the dataset") from exc
    return array[None] if c == 1 else array.transpose(2, 0, 1)


def load_imagefolder_split(directory: Path, input_shape: tuple[int, int, int], val_fraction: float = 0.2,
                           seed: int = 0) -> Split:
    """torchvision's ImageFolder layout: DIR/CLASS/*.jpg, or DIR/train/CLASS and DIR/val/CLASS."""
    directory = Path(directory)
    if (directory / "train").is_dir() and (directory / "val").is_dir():
        train = _imagefolder(directory / "train", input_shape)
        val = _imagefolder(directory / "val", input_shape, train.classes)
        return Split(train, val)
    return stratified_split(_imagefolder(directory, input_shape), val_fraction, seed)


def _imagefolder(directory: Path, shape: tuple[int, int, int], classes: tuple[str, ...] | None = None) -> Dataset:
    if not directory.is_dir():
        raise DatasetError(f"{directory} is not a directory; point --dataset imagefolder:DIR at DIR/CLASS/*.jpg")
    found = tuple(sorted(d.name for d in directory.iterdir() if d.is_dir()))
    classes = classes or found
    if len(classes) < 2 or set(found) - set(classes):
        raise DatasetError(f"{directory} needs one sub-directory per class (at least 2, the same in train and val); "
                           f"found {list(found)[:5]}")
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((directory / name).iterdir()) if (directory / name).is_dir() else []:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(_read_image(path, shape))
                labels.append(label)
    if not images:
        raise DatasetError(f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return Dataset("imagefolder", np.stack(images), np.array(labels, dtype=np.int64), classes)


def fit_to_shape(split: Split, shape: tuple[int, int, int]) -> Split:
    """Samples resized (bilinear) to the model's H x W, and 1 channel repeated to 3 where it needs 3."""
    return Split(_fit(split.train, shape), _fit(split.val, shape))


def _fit(data: Dataset, shape: tuple[int, int, int]) -> Dataset:
    if data.input_shape == shape:
        return data
    c, h, w = shape
    if data.input_shape[0] not in (1, c):
        raise DatasetError(f"{data.name} has {data.input_shape[0]} channels; the model takes {c}")
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(as_float_batch(data.x))
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    if x.shape[1] != c:
        x = x.expand(-1, c, -1, -1)
    return Dataset(data.name, np.ascontiguousarray(x.numpy()), data.y, data.classes)


def load_split(spec: str, *, val_fraction: float = 0.2, seed: int = 0,
               input_shape: tuple[int, int, int] | None = None) -> Split:
    """``digits``, ``cifar10:DIR`` or ``imagefolder:DIR``; with ``input_shape``, fitted to it."""
    if spec.startswith("imagefolder:") and len(spec) > len("imagefolder:"):
        if input_shape is None:
            raise DatasetError("imagefolder needs the model's input shape (it is read from --from MODEL)")
        return load_imagefolder_split(Path(spec[len("imagefolder:") :]).expanduser(), input_shape, val_fraction, seed)
    if spec == "digits":
        split = load_digits_split(val_fraction, seed)
    elif spec.startswith("cifar10:") and len(spec) > len("cifar10:"):
        split = load_cifar10_split(Path(spec[len("cifar10:") :]).expanduser())
    else:
        raise DatasetError(f"unknown dataset {spec!r}; use 'digits', 'cifar10:DIR' or 'imagefolder:DIR'")
    return split if input_shape is None else fit_to_shape(split, input_shape)


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
