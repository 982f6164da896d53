"""Incremental training: frozen groups stay bit-identical, resume reproduces a run, bad checkpoints are refused."""

import dataclasses

import numpy as np
import pytest
import torch

from governor.runtime.data import Split, load_digits_split
from governor.runtime.training import CheckpointMismatch, TrainConfig, evaluate, train_incremental

TINY = TrainConfig(arch="resnet-small", groups=3, epochs=1, width=0.25, batch_size=32, lr=1e-2, seed=3)


@pytest.fixture(scope="module")
def split():
    return load_digits_split(val_fraction=0.2, seed=1)


@pytest.fixture(scope="module")
def small_split(split):
    """384 training and 128 validation digits (3 batches of 128): bit-identity and resuming do not
    depend on how much data there is, and a quarter of it trains 4x faster."""
    return Split(split.train.subset(np.arange(384)), split.val.subset(np.arange(128)))


@pytest.mark.parametrize(
    ("arch", "connectivity"), [("resnet-small", "grouped"), ("resnet-small", "nested"), ("alexnet-cifar", "nested")]
)
def test_k_group_subnet_is_bit_identical_after_later_stages(small_split, arch, connectivity):
    split = small_split
    config = TrainConfig(arch=arch, groups=3, connectivity=connectivity, epochs=1, width=0.25, batch_size=128)
    probe = torch.from_numpy(split.val.x[:64])
    outputs, prefixes = {}, {}

    def record(net, k):
        net.eval()
        net.set_active_groups(k)
        with torch.inference_mode():
            outputs[k] = net(probe).clone()
        prefixes[k] = {g.name: g.tensor.detach().view(-1)[: g.offsets[k]].clone() for g in net.grouped_tensors()}

    trained = train_incremental(config, split, on_stage_end=record)
    net = trained.net.eval()
    assert sorted(outputs) == [1, 2, 3]
    with torch.inference_mode():
        for k in (1, 2):
            net.set_active_groups(k)
            assert torch.equal(net(probe), outputs[k])
            later = net.grouped_tensors()
            assert all(torch.equal(g.tensor.view(-1)[: g.offsets[k]], prefixes[k][g.name]) for g in later)
            net.set_active_groups(k + 1)
            assert not torch.equal(net(probe)[:, 0], outputs[k][:, 0])  # the next group does change the output


def test_training_learns_and_reports_accuracy_per_k(split):
    trained = train_incremental(TINY, split)
    assert len(trained.accuracies) == 3
    assert trained.accuracies[-1] > 0.6  # 10 classes: chance is 0.1
    assert trained.accuracies == tuple(evaluate(trained.net, split.val, k) for k in (1, 2, 3))
    assert trained.seconds > 0


def test_resumed_run_reproduces_an_uninterrupted_one(small_split, tmp_path):
    split = small_split
    config = dataclasses.replace(TINY, epochs=2, batch_size=128)
    reference_epochs = set()
    reference = train_incremental(config, split, progress=lambda p: reference_epochs.add((p.stage, p.epoch)))
    checkpoint = tmp_path / "m.dgm.ckpt"

    class Interrupt(Exception):
        pass

    def stop_in_second_epoch_of_stage_two(progress):
        if (progress.stage, progress.epoch, progress.batch) == (2, 2, 3):
            raise Interrupt

    with pytest.raises(Interrupt):
        train_incremental(config, split, checkpoint=checkpoint, progress=stop_in_second_epoch_of_stage_two)
    assert checkpoint.exists()
    resumed_epochs = set()
    resumed = train_incremental(config, split, checkpoint=checkpoint,
                                progress=lambda p: resumed_epochs.add((p.stage, p.epoch)))
    # mid-stage: the optimizer state comes back too (stage acceptance may add epochs, the same in both)
    assert resumed_epochs == {e for e in reference_epochs if e >= (2, 2)} and (3, 2) in resumed_epochs
    state = resumed.net.state_dict()
    assert all(torch.equal(state[name], tensor) for name, tensor in reference.net.state_dict().items())
    assert resumed.stages == reference.stages


def test_checkpoint_of_another_run_is_refused(small_split, tmp_path):
    split = small_split
    checkpoint = tmp_path / "m.ckpt"
    train_incremental(TrainConfig(arch="resnet-small", groups=2, epochs=1, width=0.25), split, checkpoint=checkpoint)
    with pytest.raises(CheckpointMismatch, match="different run"):
        train_incremental(TINY, split, checkpoint=checkpoint)
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="unreadable"):
        train_incremental(TINY, split, checkpoint=checkpoint)
