"""Executor: runs at (k, mapping), measures with the injected clock, warms up on changes, restores the process."""

import os
import threading

import numpy as np
import pytest
import torch

from governor.runtime.executor import Executor, set_process_affinity
from governor.runtime.nets import build_net, scaled_widths


def tiny_net():
    widths, _ = scaled_widths("resnet-small", 0.25, 4)
    return build_net("resnet-small", groups=4, connectivity="grouped", input_shape=(1, 8, 8), classes=10,
                     widths=widths, mean=[8.0], std=[4.0], gen=torch.Generator().manual_seed(0))


class StepClock:
    """A fake perf_counter_ns that advances 1.5 ms per reading."""

    def __init__(self):
        self.now = 0

    def __call__(self):
        self.now += 1_500_000
        return self.now


@pytest.fixture
def batch():
    return np.random.default_rng(0).uniform(0, 16, size=(3, 1, 8, 8)).astype(np.float32)


def test_outputs_are_the_k_group_logits_and_latency_comes_from_the_clock(batch):
    net = tiny_net()
    with Executor(net, clock=StepClock(), warmup_runs=1) as executor:
        for k in (1, 4, 2):
            result = executor.run(batch, k)
            net.set_active_groups(k)
            with torch.inference_mode():
                expected = net(torch.from_numpy(batch)).numpy()
            np.testing.assert_array_equal(result.outputs, expected)
            assert result.outputs.shape == (3, 10)
            assert result.latency_ms == pytest.approx(1.5)


def test_real_clock_measures_positive_latency(batch):
    with Executor(tiny_net()) as executor:
        outputs, latency_ms = executor.run(batch, 2)
    assert 0 < latency_ms < 10_000
    assert np.isfinite(outputs).all()


def test_warm_up_runs_only_when_k_threads_cpus_or_shape_change(batch):
    with Executor(tiny_net(), warmup_runs=2) as executor:
        steps = [
            ((batch, 1), {"threads": 2}, 2),  # first run
            ((batch, 1), {"threads": 2}, 0),
            ((batch, 3), {"threads": 2}, 2),  # k changed
            ((batch, 3), {"threads": 1}, 2),  # thread count changed
            ((batch[:1], 3), {"threads": 1}, 2),  # batch shape changed
            ((batch[:1], 3), {"threads": 1}, 0),
        ]
        for args, kwargs, expected in steps:
            before = executor.warmups
            executor.run(*args, **kwargs)
            assert executor.warmups - before == expected


def test_thread_count_is_applied_and_restored(batch):
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with Executor(tiny_net()) as executor:
        executor.run(batch, 4, threads=target)
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one of them")
def test_affinity_covers_every_thread_and_is_restored(batch):
    before = os.sched_getaffinity(0)
    cpu = min(before)
    stop = threading.Event()
    worker_mask = {}

    def worker():
        stop.wait(5)
        worker_mask["cpus"] = os.sched_getaffinity(0)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        with Executor(tiny_net()) as executor:
            executor.run(batch, 2, threads=1, cpus=[cpu])
            assert os.sched_getaffinity(0) == {cpu}
            stop.set()
            thread.join()
            assert worker_mask["cpus"] == {cpu}  # a thread that existed before the run was moved too
            executor.run(batch, 2, threads=1, cpus=None)
            assert os.sched_getaffinity(0) == before
            executor.run(batch, 2, threads=1, cpus=[cpu])
        assert os.sched_getaffinity(0) == before
    finally:
        stop.set()
        thread.join()
        set_process_affinity(before)


def test_bad_requests_are_refused_with_what_to_do(batch):
    with Executor(tiny_net()) as executor:
        with pytest.raises(ValueError, match=r"takes \(N, 1, 8, 8\)"):
            executor.run(batch[0], 1)
        with pytest.raises(ValueError, match=r"groups 1\.\.4"):
            executor.run(batch, 5)
        with pytest.raises(ValueError, match="not all available"):
            executor.run(batch, 1, cpus=[10_000])
        with pytest.raises(ValueError, match="threads must be >= 1"):
            executor.run(batch, 1, threads=0)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            Executor(tiny_net(), device="cuda")
