"""Runtime tests train and run tiny networks: one intra-op thread is fastest and deterministic there
(on a busy 2-core host, OpenMP spin-waits make 2 threads about 10x slower)."""

import pickle

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_cifar_batch(path, n, label_offset):
    data = (np.arange(n * 3072, dtype=np.int64).reshape(n, 3072) % 256).astype(np.uint8)
    batch = {b"batch_label": b"x", b"data": data, b"labels": [(i + label_offset) % 10 for i in range(n)]}
    # protocol 2 naming numpy.core, like the python-2 era files in cifar-10-python.tar.gz
    raw = pickle.dumps(batch, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    path.write_bytes(raw)


@pytest.fixture
def cifar_dir(tmp_path):
    """A miniature cifar-10-batches-py: data_batch_1 (6 images), data_batch_2 (4), test_batch (5)."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    write_cifar_batch(root / "data_batch_1", 6, 0)
    write_cifar_batch(root / "data_batch_2", 4, 3)
    write_cifar_batch(root / "test_batch", 5, 7)
    return root
