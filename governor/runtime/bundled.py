"""The daemon's default model: a G=4 resnet-small trained on scikit-learn's digits at first start.

Training is seeded and single-threaded (a few seconds on a small CPU, where OpenMP spinning on a busy
2-core host can cost 10x). It repeats bit for bit on one machine, not across machines: torch picks
its vectorised kernels by CPU (AVX512, AVX2, NEON...), they round differently, and after 16 epochs
the weights differ enough to move a validation image or two (digits' split has 359). What holds on
every machine is checked by tests and the benchmark: >= 95 % validation accuracy at k = G, and
accuracy non-decreasing in k, which training's stage acceptance ensures (governor.runtime.training).
The result is cached under ``cache_dir``; a cached file that is missing, corrupt or of another
format version is trained again.
"""

from __future__ import annotations

from pathlib import Path

from governor.core.modelmeta import ModelFileError, read_model_meta
from governor.runtime.data import load_digits_split
from governor.runtime.modelfile import describe, save_model
from governor.runtime.training import TrainConfig, train_incremental

DEFAULT_MODEL_NAME = "digits-resnet-small-g4.dgm"
DEFAULT_CONFIG = TrainConfig(
    arch="resnet-small", groups=4, connectivity="grouped", epochs=4, width=1.0, lr=1e-2, seed=0,
)


def _usable(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            meta = read_model_meta(f)
    except (OSError, ModelFileError):
        return False
    return meta.arch == DEFAULT_CONFIG.arch and meta.groups == DEFAULT_CONFIG.groups


def train_default_model(path: Path, config: TrainConfig = DEFAULT_CONFIG) -> Path:
    """Train ``config`` on digits with one intra-op thread and write the model file to ``path``."""
    split = load_digits_split(seed=config.seed)
    trained = train_incremental(config, split, threads=1)
    save_model(path, trained.net, describe(trained, config, split))
    return path


def ensure_default_model(cache_dir: Path) -> Path:
    """Path of the bundled digits model in ``cache_dir``, training it first if it is not there yet."""
    cache_dir = Path(cache_dir)
    path = cache_dir / DEFAULT_MODEL_NAME
    if _usable(path):
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    return train_default_model(path)
