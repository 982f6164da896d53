"""Residual learning, learned margin and the contention model."""

import numpy as np
import pytest

from governor.core.decision.feedback import ResidualTracker, contention_multiplier


def test_residual_converges_to_true_bias():
    tr = ResidualTracker(n_groups=2, alpha=0.3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        tr.update(0, 10.0, 13.0 * rng.uniform(0.98, 1.02))
    assert tr.multiplier()[0] == pytest.approx(1.3, rel=0.03)
    assert tr.multiplier()[1] == 1.0
    assert tr.seen(0) == 200 and tr.seen(1) == 0


def test_margin_grows_with_noise_and_is_clipped():
    quiet, noisy = ResidualTracker(1), ResidualTracker(1)
    rng = np.random.default_rng(1)
    for _ in range(64):
        quiet.update(0, 10.0, 10.0 * rng.uniform(0.99, 1.01))
        noisy.update(0, 10.0, 10.0 * rng.uniform(0.7, 1.3))
    assert quiet.margin() < noisy.margin() <= noisy.max_margin
    assert quiet.margin() >= quiet.min_margin


def test_margin_is_the_quantile_of_recent_relative_errors():
    tr = ResidualTracker(1, alpha=0.0, window=16, min_margin=0.0, max_margin=10.0)
    rng = np.random.default_rng(2)
    measured = 10.0 * rng.uniform(0.8, 1.6, size=40)
    for m in measured:
        tr.update(0, 10.0, float(m))
    # alpha 0 keeps the first sample's bias, so each error is measured / (10 x first / 10) - 1
    errors = measured[-16:] / measured[0] - 1.0
    assert tr.margin() == pytest.approx(float(np.quantile(errors, 0.99)), rel=1e-12)


def test_one_mappings_tail_does_not_inflate_another_mappings_margin():
    # Groups 0 and 1 are two k of one-thread runs, group 2 the two-thread mapping that hits a busy core.
    tr = ResidualTracker(3, mapping_of=[0, 0, 1])
    rng = np.random.default_rng(3)
    for _ in range(20):
        tr.update(0, 1.0, rng.uniform(0.98, 1.02))
        tr.update(1, 2.0, 2.0 * rng.uniform(0.98, 1.02))
    tr.update(2, 1.0, 1.0)
    tr.update(2, 1.0, 40.0)  # the barrier waited on a shared core
    margins = tr.margins()
    assert margins[0] == margins[1] < 0.05  # the one-thread mapping's own tail
    assert margins[2] == tr.margin() == tr.max_margin  # too few of its own: everyone's, outlier and all


def test_a_mapping_with_enough_outcomes_gets_its_own_margin():
    tr = ResidualTracker(2, mapping_of=[0, 1], max_margin=10.0)
    for _ in range(7):
        tr.update(1, 1.0, 1.0)
    tr.update(0, 1.0, 1.0)
    tr.update(0, 1.0, 3.0)
    assert tr.margins()[1] == tr.margin()  # seven outcomes: not yet its own
    tr.update(1, 1.0, 1.0)
    assert tr.margins()[1] == tr.min_margin < tr.margin()
    with pytest.raises(ValueError, match="mapping_of"):
        ResidualTracker(2, mapping_of=[0])


def test_no_history_means_a_careful_margin():
    tr = ResidualTracker(1)
    assert tr.margin() == pytest.approx(tr.max_margin / 2)


def test_bad_samples_are_ignored():
    tr = ResidualTracker(1)
    for pred, meas in [(0, 5), (5, 0), (float("nan"), 3), (-1, 2)]:
        tr.update(0, pred, meas)
    assert tr.seen(0) == 0


def test_contention_cpu_and_gpu():
    groups = [("big", 1, 4), ("big", 4, 4), ("gpu", 1, 4), ("little", 2, 4)]
    kinds = {"big": "cpu", "little": "cpu", "gpu": "gpu"}
    cores = {"big": 4, "little": 4, "gpu": 1}
    m = contention_multiplier(groups, {"big": 0.5, "gpu": 0.5}, kinds, cores)
    assert m[0] == 1.0  # one thread still fits on the two free cores
    assert m[1] == pytest.approx((4 + 2) / 4)
    assert m[2] == pytest.approx(2.0)
    assert m[3] == 1.0  # nobody else on the little cluster
    assert np.all(contention_multiplier(groups, {"gpu": 1.0}, kinds, cores) < 25)
