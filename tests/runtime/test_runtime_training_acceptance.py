"""Stage acceptance: a stage k whose last epoch ends below k-1's validation accuracy keeps its best
epoch, or trains extra epochs until one is not below, so accuracy per k is non-decreasing.

The validation accuracies a stage sees are scripted (its real training still runs), so each path of
the rule is reached on every machine; the bundled model's test checks the real figures."""

import dataclasses

import numpy as np
import pytest
import torch

from governor.runtime import training
from governor.runtime.data import Split, load_digits_split
from governor.runtime.training import EXTRA_LR_FRACTION, StageOutcome, TrainConfig, train_incremental

FLOOR = 0.9  # what the scripted k-1 sub-network scores
CONFIG = TrainConfig(arch="resnet-small", groups=2, epochs=2, width=0.25, batch_size=64, lr=1e-2, seed=5)


@pytest.fixture(scope="module")
def split():
    """256 training and 64 validation digits: the rule does not depend on how much data there is."""
    full = load_digits_split(seed=1)
    return Split(full.train.subset(np.arange(256)), full.val.subset(np.arange(64)))


@pytest.fixture
def script(monkeypatch):
    """``script(values)``: stage 2's evaluations of its own 2-group sub-network return ``values`` in
    order and its floor (k = 1) is FLOOR; the real evaluation still runs (it sets the net's mode)."""
    real = training.evaluate

    def install(values):
        left = list(values)

        def scripted(net, data, k, batch_size=512):
            measured = real(net, data, k, batch_size)
            stage = net.group_state.training_group
            if stage == 2 and k == 2:
                return left.pop(0)
            return FLOOR if stage == 2 and k == 1 else measured

        monkeypatch.setattr(training, "evaluate", scripted)
        return left

    return install


def train_recording(split, config=CONFIG, **kwargs):
    """Train, recording the whole state at the end of every stage-2 epoch (an epoch's last report comes
    after its last optimizer step) and every (stage, epoch, epochs) reported."""
    nets, states, reported = [], {}, set()
    new_net = training.new_net

    def progress(p):
        reported.add((p.stage, p.epoch, p.epochs))
        if p.stage == 2 and p.batch == p.batches:
            states[p.epoch] = {n: t.clone() for n, t in nets[-1].state_dict().items()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "new_net", lambda c, s: nets.append(new_net(c, s)) or nets[-1])
        trained = train_incremental(config, split, progress=progress, **kwargs)
    return trained, states, sorted(reported)


def same_state(net, state):
    return all(torch.equal(net.state_dict()[name], tensor) for name, tensor in state.items())


def test_a_last_epoch_below_the_floor_gives_way_to_the_best_epoch(split, script):
    script([0.95, 0.85])
    trained, states, _ = train_recording(split)
    assert trained.stages[1] == StageOutcome(k=2, epochs_run=2, kept_epoch=1, accuracy=0.95, floor=FLOOR)
    assert trained.stages[1].accepted
    assert same_state(trained.net, states[1]) and not same_state(trained.net, states[2])


def test_a_last_epoch_that_meets_the_floor_is_kept_even_if_an_earlier_one_scored_higher(split, script):
    script([0.99, 0.92])
    trained, states, reported = train_recording(split)
    assert trained.stages[1] == StageOutcome(k=2, epochs_run=2, kept_epoch=2, accuracy=0.92, floor=FLOOR)
    assert same_state(trained.net, states[2])
    assert (2, 3, 4) not in reported  # no extra epoch


def test_a_stage_with_every_epoch_below_the_floor_trains_extra_epochs_until_one_is_not(split, script, monkeypatch):
    script([0.8, 0.85, 0.88, 0.92])
    rates = []
    real_rate = training._learning_rate
    monkeypatch.setattr(training, "_learning_rate", lambda c, e, b, n: rates.append((e, real_rate(c, e, b, n)))
                        or rates[-1][1])
    trained, states, reported = train_recording(split)
    assert trained.stages[1] == StageOutcome(k=2, epochs_run=4, kept_epoch=4, accuracy=0.92, floor=FLOOR)
    assert [r for r in reported if r[0] == 2] == [(2, 1, 2), (2, 2, 2), (2, 3, 4), (2, 4, 4)]
    assert same_state(trained.net, states[4])
    extra = [rate for epoch, rate in rates if epoch >= CONFIG.epochs]
    assert extra and max(extra) == pytest.approx(CONFIG.lr * EXTRA_LR_FRACTION)


def test_a_stage_that_never_reaches_its_floor_keeps_its_best_epoch_and_says_so(split, script):
    script([0.8, 0.85, 0.83, 0.84])
    trained, states, _ = train_recording(split)
    assert trained.stages[1] == StageOutcome(k=2, epochs_run=4, kept_epoch=2, accuracy=0.85, floor=FLOOR)
    assert not trained.stages[1].accepted
    assert same_state(trained.net, states[2])


def test_a_run_resumed_in_an_extra_epoch_keeps_the_same_best_epoch(split, script, tmp_path):
    script([0.8, 0.85, 0.83, 0.84])
    reference, _, _ = train_recording(split)
    checkpoint = tmp_path / "m.dgm.ckpt"

    class Interrupt(Exception):
        pass

    def stop_in_the_first_extra_epoch(p):
        if (p.stage, p.epoch, p.batch) == (2, 3, 2):
            raise Interrupt

    script([0.8, 0.85])
    with pytest.raises(Interrupt):
        train_incremental(CONFIG, split, checkpoint=checkpoint, progress=stop_in_the_first_extra_epoch)
    script([0.83, 0.84])  # what the resumed epochs 3 and 4 score; epoch 2's 0.85 comes from the checkpoint
    resumed = train_incremental(CONFIG, split, checkpoint=checkpoint)
    assert resumed.stages == reference.stages
    assert same_state(resumed.net, reference.net.state_dict())


def test_extra_epochs_decay_from_a_tenth_of_the_rate():
    config = dataclasses.replace(CONFIG, epochs=4)
    assert training._learning_rate(config, 0, 0, 10) == pytest.approx(config.lr)
    assert training._learning_rate(config, 4, 0, 10) == pytest.approx(config.lr * EXTRA_LR_FRACTION)
    assert training._learning_rate(config, 6, 0, 10) == pytest.approx(config.lr * EXTRA_LR_FRACTION / 2)
