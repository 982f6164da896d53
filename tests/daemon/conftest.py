"""A small digits model trained once per session (1 epoch per stage: quick, still a real dynamic net)."""

import pytest
import torch


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory):
    from governor.runtime.bundled import train_default_model
    from governor.runtime.training import TrainConfig

    path = tmp_path_factory.mktemp("models") / "quick-digits.dgm"
    before = torch.get_num_threads()
    try:
        train_default_model(path, TrainConfig(arch="resnet-small", groups=4, epochs=1, width=0.5, seed=0))
    finally:
        torch.set_num_threads(before)
    return path
