"""Runtime tests train and run tiny networks: one intra-op thread is fastest and deterministic there
(on a busy 2-core host, OpenMP spin-waits make 2 threads about 10x slower)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
