"""The profiler's sampler runs on every catalogue board for every group count, also past a finished mapping.

Issue 15: ``governor profile --board sim:odroid-xu3 --max-points 168`` with a 2-group model died at
154/168 points. The XU3's GPU mapping has only 7 clocks x 2 k = 14 candidates; once all were measured,
the sampler still asked its models for deviations at the mapping's (now empty) candidate set, and the
k-basis product could not reshape an empty array.
"""

from __future__ import annotations

import numpy as np
import pytest
from profiling_boards import BOARDS, catalogue_space, synthetic_board

from governor.core.perf.features import CandidateSpec, KBasis, kron_columns
from governor.core.perf.fit import evaluate, fit
from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.space import Space

GROUPS = (1, 2, 3, 4, 8)
NEVER = 1e-9  # target MAPE (%) no model reaches: the budget alone ends a run


def _assert_models_cover(sampler: ActiveSampler) -> None:
    """Every mapping has finite, positive latency and power predictions over all its candidates."""
    space, model = sampler.space, sampler.model()
    for m, mapping in enumerate(space.mappings):
        grid = space.grid[space.mapping_of == m]
        for target in ("latency_ms", "power_mw"):
            mean, std = model.predict(target, mapping, grid)
            assert np.all(np.isfinite(mean)) and np.all(mean > 0), (target, mapping)
            assert np.all(np.isfinite(std)) and np.all(std >= 0), (target, mapping)


@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("board", BOARDS)
def test_sampler_goes_on_after_a_mapping_is_fully_measured(board: str, groups: int) -> None:
    # As if resumed from a checkpoint that holds every point of the smallest mapping: the sampler must
    # measure the other mappings' corners, then pick greedily among what is left, then stop.
    space = catalogue_space(board, groups)
    source = synthetic_board(space, noise=0.0)  # exact: robust refits of the big mapping converge at once
    small = int(np.argmin(np.bincount(space.mapping_of)))
    done = [int(i) for i in np.flatnonzero(space.mapping_of == small)]
    corners = {i for m in range(len(space.mappings)) for i in space.corners(m)} - set(done)
    budget = len(done) + len(corners) + 6  # the corners, then a greedy batch or two
    sampler = ActiveSampler(space, SamplerSettings(max_points=budget, target_mape_pct=NEVER))
    for i in done:
        sampler.record(i, source.measure(space.point(i)))
    source.asked.clear()

    run_sampler(source, sampler)

    status = sampler.status()
    assert status.measured == min(budget, len(space.grid))
    assert status.stopped == ("exhausted" if status.measured == len(space.grid) else "max-points")
    assert len(source.asked) == len(set(source.asked)) == status.measured - len(done)
    assert not set(source.asked) & set(done)  # nothing measured twice
    _assert_models_cover(sampler)


def test_xu3_with_two_groups_goes_past_its_gpu_mapping() -> None:
    # The reported run, from scratch: here the 14 GPU candidates are all measured at point 95, and the
    # sampler must go on choosing among the CPU mappings' candidates (it crashed asking for the next batch)
    space = catalogue_space("odroid-xu3", 2)
    gpu = space.mapping_of == space.mappings.index("gpu/1")
    source = synthetic_board(space, noise=0.0)
    sampler = ActiveSampler(space, SamplerSettings(max_points=105, target_mape_pct=NEVER))
    gpu_done_at = 0
    while batch := sampler.next_batch():
        for i in batch:
            sampler.record(i, source.measure(space.point(i)))
        if not gpu_done_at and all(i in sampler.measured for i in np.flatnonzero(gpu)):
            gpu_done_at = len(sampler.measured)
    assert 0 < gpu_done_at < 105  # the crash's condition was reached with budget left
    assert sampler.status().stopped == "max-points" and sampler.status().measured == 105
    assert len(source.asked) == len(set(source.asked)) == 105
    _assert_models_cover(sampler)


def test_a_space_measured_to_the_last_point_stops_as_exhausted() -> None:
    space = catalogue_space("odroid-xu3", 1)  # a7, a15: 13 and 19 clocks x 3 threads; gpu: 7 clocks
    few = Space(space.domains, space.grid[space.mapping_of == space.mappings.index("gpu/1")],
                np.zeros(7, dtype=np.int64), ("gpu/1",), space.opp_hz)
    source = synthetic_board(few)
    sampler = ActiveSampler(few, SamplerSettings(max_points=len(few.grid), target_mape_pct=NEVER))
    run_sampler(source, sampler)
    # a budget that ends exactly on the last candidate left nothing out: that is "exhausted"
    assert sampler.status().stopped == "exhausted"
    assert sorted(source.asked) == list(range(7))


@pytest.mark.parametrize("groups", GROUPS)
@pytest.mark.parametrize("levels", [(), (1.0e9,), (1.0e9, 2.0e9)], ids=["no-cpufreq", "one-clock", "two-clocks"])
def test_single_level_and_missing_axes_are_sampled_to_the_end(levels: tuple[float, ...], groups: int) -> None:
    # A host without cpufreq (a VM: only k varies), a clock with one level, and one with two
    space = Space.cartesian({"cpu": levels} if levels else {}, ("cpu/1",), tuple(range(1, groups + 1)))
    source = synthetic_board(space)
    sampler = ActiveSampler(space, SamplerSettings(max_points=len(space.grid) + 3, target_mape_pct=NEVER))
    run_sampler(source, sampler)
    assert sampler.status().stopped == "exhausted"
    assert sorted(source.asked) == list(range(len(space.grid)))


def test_kron_columns_of_no_rows_has_every_column() -> None:
    assert kron_columns(np.ones((0, 3)), np.ones((0, 2))).shape == (0, 6)
    assert kron_columns(np.ones((2, 3)), np.ones((2, 2))).shape == (2, 6)


@pytest.mark.parametrize("spec", [
    CandidateSpec("roofline", KBasis("linear")),
    CandidateSpec("roofline", KBasis("hybrid", width=16, channels=8)),
    CandidateSpec("saturated", KBasis("onehot", values=(1.0, 2.0))),
    CandidateSpec("poly", KBasis("curve", values=(1.0, 1.9), name="macs"), powers=(1, 2, 3), pairs=1),
    CandidateSpec("logpoly", KBasis("const"), pairs=1),
], ids=lambda spec: spec.label)
def test_every_form_predicts_an_empty_grid(spec: CandidateSpec) -> None:
    # the sampler asks a mapping's models about its unmeasured candidates, which may be none
    space = catalogue_space("odroid-xu3", 2)
    rows = np.flatnonzero(space.mapping_of == space.mappings.index("gpu/1"))
    g, k = space.axes().normalise(space.grid[rows])
    params = fit(spec, g, k, 2, synthetic_board(space).values["latency_ms"][rows])
    empty_g, empty_k = space.axes().normalise(np.empty((0, space.grid.shape[1])))
    assert evaluate(spec, np.stack([params, params]), empty_g, empty_k, 2).shape == (0, 2)
