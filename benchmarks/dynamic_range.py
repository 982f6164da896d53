"""Dynamic range of the group-pruned networks on this machine (measured, not simulated).

For alexnet-cifar and resnet-small (G=4, 3x32x32 CIFAR-10 shape, default widths, random weights: latency
does not depend on weight values) and both connectivities: batch-1 latency per k (median of --runs
executor runs after warm-up), MACs per k, the time dynamic range max/min, the cost of switching k
(and whether it allocates), and stored bytes of the dynamic model vs the full-width network vs G
separately stored models. Then the bundled digits model is trained (seeded) and its validation
accuracy per k is printed with its latency per k.

    python benchmarks/dynamic_range.py [--runs 300] [--threads 1] [--skip-digits]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from governor.runtime.bundled import ensure_default_model
from governor.runtime.executor import Executor
from governor.runtime.modelfile import levels, load_model, stored_bytes
from governor.runtime.nets import ARCHS, DynamicNet, build_net, scaled_widths

CIFAR_SHAPE = (3, 32, 32)


def make_net(arch: str, connectivity: str, groups: int = 4) -> DynamicNet:
    widths, fcs = scaled_widths(arch, 1.0, groups)
    return build_net(arch, groups=groups, connectivity=connectivity, input_shape=CIFAR_SHAPE, classes=10,
                     widths=widths, fc_widths=fcs, mean=[0.0] * 3, std=[1.0] * 3,
                     gen=torch.Generator().manual_seed(0)).eval()


def latency_per_k(executor: Executor, shape: tuple[int, ...], runs: int, threads: int) -> list[list[float]]:
    """Batch-1 latency samples (ms) per k; k values are interleaved so load drift hits them all alike."""
    batch = np.random.default_rng(0).uniform(0, 255, size=(1, *shape)).astype(np.float32)
    samples: dict[int, list[float]] = {k: [] for k in range(1, executor.groups + 1)}
    chunk = 25
    for _ in range(max(1, runs // chunk)):
        for k in samples:
            samples[k] += [executor.run(batch, k, threads=threads).latency_ms for _ in range(chunk)]
    return [samples[k] for k in samples]


def median_p10(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples), float(np.percentile(samples, 10))


def switch_cost_us(net: DynamicNet, switches: int = 20000) -> tuple[float, bool]:
    """Mean time of set_active_groups (µs) and whether every tensor kept its storage."""
    before = {n: t.data_ptr() for n, t in [*net.named_parameters(), *net.named_buffers()]}
    start = time.perf_counter()
    for i in range(switches):
        net.set_active_groups(1 + i % net.groups)
    elapsed = time.perf_counter() - start
    after = {n: t.data_ptr() for n, t in [*net.named_parameters(), *net.named_buffers()]}
    return elapsed / switches * 1e6, before == after


def report_arch(arch: str, connectivity: str, runs: int, threads: int) -> None:
    net = make_net(arch, connectivity)
    per_k = levels(net)
    with Executor(net) as executor:
        lat, p10 = zip(*map(median_p10, latency_per_k(executor, CIFAR_SHAPE, runs, threads)), strict=True)
    switch_us, in_place = switch_cost_us(net)
    full, dynamic = per_k[-1].state_bytes, stored_bytes(net)
    separate = sum(lv.state_bytes for lv in per_k)
    print(f"\n{arch} ({connectivity}, G={net.groups}, input {CIFAR_SHAPE}, batch 1, {threads} threads)")
    print(f"  {'k':>2} {'MACs':>12} {'params':>10} {'median ms':>10} {'p10 ms':>8} {'GMAC/s':>7}")
    for lv, ms, low in zip(per_k, lat, p10, strict=True):
        print(f"  {lv.k:>2} {lv.macs:>12,} {lv.params:>10,} {ms:>10.3f} {low:>8.3f} {lv.macs / ms / 1e6:>7.2f}")
    macs_range = per_k[-1].macs / per_k[0].macs
    print(f"  time dynamic range max/min: {max(lat) / min(lat):.2f}x   MACs range: {macs_range:.2f}x")
    print(f"  median latency strictly increasing in k: {all(a < b for a, b in itertools.pairwise(lat))}")
    print(f"  set_active_groups: {switch_us:.2f} µs per switch, tensors kept in place: {in_place}")
    print(f"  stored bytes: dynamic {dynamic / 1024:.1f} KiB, full-width network {full / 1024:.1f} KiB "
          f"({dynamic / full:.3f}x), {net.groups} separate models {separate / 1024:.1f} KiB "
          f"({separate / dynamic:.2f}x the dynamic model)")


def report_digits(cache: Path, runs: int, threads: int) -> None:
    started = time.perf_counter()
    path = ensure_default_model(cache)
    trained_in = time.perf_counter() - started
    loaded = load_model(path)
    meta = loaded.meta
    with Executor(loaded.net) as executor:
        lat, p10 = zip(*map(median_p10, latency_per_k(executor, meta.input_shape, runs, threads)), strict=True)
    acc = [meta.accuracy(k) or 0.0 for k in range(1, meta.groups + 1)]
    print(f"\nbundled digits model ({meta.arch}, {meta.connectivity}, G={meta.groups}, "
          f"{meta.training.val_samples} validation samples; trained in {trained_in:.1f} s wall)")
    print(f"  {'k':>2} {'accuracy':>9} {'MACs':>10} {'median ms':>10} {'p10 ms':>8}")
    for k, (a, ms, low) in enumerate(zip(acc, lat, p10, strict=True), start=1):
        print(f"  {k:>2} {100 * a:>8.2f}% {meta.macs(k):>10,} {ms:>10.3f} {low:>8.3f}")
    print(f"  accuracy at k=G >= 95 %: {acc[-1] >= 0.95}; non-decreasing in k: {acc == sorted(acc)}")
    print(f"  time dynamic range max/min: {max(lat) / min(lat):.2f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="timed runs per k (default 300)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (default 1: on a busy 2-core host, OpenMP spin-waits swamp 2)")
    parser.add_argument("--skip-digits", action="store_true", help="do not train the digits model")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"host: {platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, torch {torch.__version__}, "
          f"load average {load:.2f} (measured, not simulated)")
    for arch in ARCHS:
        for connectivity in ("grouped", "nested"):
            report_arch(arch, connectivity, args.runs, args.threads)
    if not args.skip_digits:
        with tempfile.TemporaryDirectory() as cache:
            report_digits(Path(cache), args.runs, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
