"""The measurement harness: real workers, real peak memory, failures become rows (never crashes)."""

import functools
import signal

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from governor.core.training.cost import parse_training_profile  # noqa: E402
from governor.core.training.features import LayerShape, network_from_costs  # noqa: E402
from governor.runtime.training_profile import (  # noqa: E402
    StepOptions,
    TrainingProfileError,
    dynamic_net_factories,
    measure_point,
    profile_training,
    trace_network,
)

# One thread: two OpenMP threads on a busy 2-core host wait for each other at every barrier.
QUICK = StepOptions(warmup=1, repeats=2, min_seconds=0.0, retries=0, threads=1)
SHAPE = (3, 32, 32)


def tiny(width: int = 8) -> functools.partial:
    # Built from torch.nn classes only, so the factory pickles into the worker from anywhere.
    return functools.partial(nn.Sequential, nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(width, width, 3, padding=1, groups=2), nn.AdaptiveAvgPool2d(4),
                             nn.Flatten(), nn.Linear(16 * width, 10))


def test_tracing_records_conv_and_linear_shapes_and_stored_parameters():
    network, classes = trace_network(tiny()(), SHAPE)
    assert classes == 10
    assert network.layers == (
        LayerShape("conv", 3, 8, (32, 32), (3, 3), 1, 1, 1.0),
        LayerShape("conv", 8, 8, (32, 32), (3, 3), 1, 1, 2.0),
        LayerShape("linear", 128, 10),
    )
    assert network.params == sum(p.numel() for p in tiny()().parameters())


def test_dynamic_networks_describe_themselves_as_their_model_file_would():
    factory = dynamic_net_factories("resnet-small", groups=2, width=0.25)[1]
    net = factory()
    network, _ = trace_network(net, SHAPE)
    assert network == network_from_costs(net.layer_costs(1), sum(p.numel() for p in net.parameters()))
    full, _ = trace_network(dynamic_net_factories("resnet-small", groups=2, width=0.25)[2](), SHAPE)
    assert full.params == network.params  # all groups are stored whatever k runs
    assert sum(layer.weights for layer in full.layers) > sum(layer.weights for layer in network.layers)


def test_a_bigger_batch_measures_more_memory_and_a_positive_step_time():
    small = measure_point(tiny(), SHAPE, 10, 2, QUICK)
    large = measure_point(tiny(), SHAPE, 10, 256, QUICK)
    assert small["passed"] and large["passed"]
    # batch 256 keeps several 256x8x32x32 float tensors (8 MiB each) alive for backward
    assert large["memory_mb"] - small["memory_mb"] > 16
    assert 0 < small["memory_mb"] < large["memory_mb"] < 2000
    assert small["latency_ms"] > 0 and 0 <= large["contention"] <= 1


def test_the_memory_cap_fails_the_point_and_stops_that_k():
    # The first step of any network costs ~100 MB of runtime pages (kernels, thread pool), so a
    # 400 MB cap passes batch 2; batch 4096 holds several 134 MB activations and fails.
    rows = []
    options = StepOptions(warmup=1, repeats=1, min_seconds=0, memory_cap_mb=400.0, retries=0, threads=1)
    profile = profile_training({1: tiny()}, SHAPE, [2, 4096, 8192], options, on_row=lambda row, n: rows.append(row))
    assert [(r.batch, r.passed) for r in profile.rows] == [(2, True), (4096, False)]  # 8192 never tried
    failed = profile.rows[1]
    assert "memory cap 400 MB" in failed.reason and failed.memory_mb is None
    assert profile.rows[0].memory_mb < 400
    assert rows == list(profile.rows)


def test_an_allocation_failure_is_an_out_of_memory_row():
    # 128x upsampling of 32 images needs 6 GiB at once: beyond the address-space limit (cap + 1 GiB).
    factory = functools.partial(nn.Sequential, nn.Upsample(scale_factor=128), nn.Flatten(1), nn.LazyLinear(2))
    result = measure_point(factory, (3, 32, 32), 2, 32, StepOptions(memory_cap_mb=400, retries=0, threads=1))
    assert not result["passed"] and "out of memory" in result["reason"]


def test_a_killed_worker_is_a_failed_row_not_a_crash():
    result = measure_point(functools.partial(signal.raise_signal, signal.SIGKILL), SHAPE, 10, 2, QUICK)
    assert not result["passed"] and "signal 9" in result["reason"]


def test_a_broken_model_is_an_error_that_names_the_batch():
    with pytest.raises(TrainingProfileError, match=r"batch 4.*fix the model"):
        measure_point(functools.partial(nn.Linear, 5, 3), SHAPE, 3, 4, QUICK)


def test_a_sweep_writes_a_profile_with_every_point_and_the_shapes_of_each_k():
    profile = profile_training({1: tiny(4), 2: tiny(8)}, SHAPE, [2], QUICK, passes=2, model_name="tiny")
    assert [(r.groups, r.batch) for r in profile.rows] == [(1, 2), (2, 2)]
    assert all(r.passed and len(r.memory_passes_mb) == 2 and r.latency_ms == pytest.approx(np.mean(r.latency_passes_ms))
               for r in profile.rows)
    assert profile.configs[2].layers[0].out_channels == 8 and profile.threads == 1 and not profile.simulated
    # one thread: the step's CPU time is recorded, and a thread cannot run longer than the wall clock
    # (the two clocks differ by microseconds, hence the 2 % slack)
    for row in profile.rows:
        assert len(row.cpu_passes_ms) == 2
        assert all(0 < cpu <= 1.02 * wall for cpu, wall in zip(row.cpu_passes_ms, row.latency_passes_ms, strict=True))
    assert parse_training_profile(profile.to_json()) == profile
