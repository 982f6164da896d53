"""Coverage of `governor convert`: every torchvision classification CNN family, at its native input size.

For each model of the zoo (``governor.runtime.zoo``: torchvision's definitions, written without
torchvision, state_dict-compatible) and, where torchvision imports, torchvision's own constructor, this
converts the randomly initialised network (G groups, slimmable, l1 order) and prints one markdown row:
whether it converts (or the converter's one-line reason), the k = G max relative error against the
original module on two random inputs, MACs and measured CPU batch-1 latency (median) per k, the stored
bytes against the original state_dict's, and the conversion time. Grouped and nested connectivities are
tried too and their answer printed.

    python benchmarks/convert.py                  # every zoo model, G = 4 (about 10 minutes on 2 cores)
    python benchmarks/convert.py --models resnet18,mobilenet_v2 --reps 3

Latencies are wall-clock on this machine with torch's default thread count, the original module timed
in the same run, so "k=G / orig" is the interpreter's overhead.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from governor.runtime.converter import ConversionError, convert
from governor.runtime.converter.sources import check_equivalence
from governor.runtime.graphnet import GraphNet
from governor.runtime.modelfile import stored_bytes
from governor.runtime.zoo import FAMILY, INPUT_SIZE, MODELS


def _median_ms(run: Callable[[], Any], reps: int) -> float:
    run()  # warm-up: allocations, the interpreter's corner cache
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def _other_connectivities(module: nn.Module, shape: tuple[int, int, int], groups: int) -> str:
    answers, reasons = [], set()
    for connectivity in ("grouped", "nested"):
        try:
            convert(module, shape, groups=groups, connectivity=connectivity)
            answers.append(f"{connectivity}: yes")
        except ConversionError as exc:
            answers.append(f"{connectivity}: no")
            reasons.add(str(exc).split(";")[0].split("is not possible: ")[-1])
    return "; ".join(answers) + (f" ({'; '.join(sorted(reasons))})" if reasons else "")


def measure(name: str, build: Callable[[], nn.Module], shape: tuple[int, int, int], groups: int,
            reps: int) -> dict[str, Any]:
    """One model's row: conversion, error, and per-k MACs and latency."""
    torch.manual_seed(0)
    module = build().eval()
    x = torch.randn(1, *shape)
    row: dict[str, Any] = {"name": name}
    started = time.perf_counter()
    try:
        net: GraphNet = convert(module, shape, groups=groups)
    except ConversionError as exc:
        row["error"] = str(exc)
        return row
    row["seconds"] = time.perf_counter() - started
    row["rel_error"] = check_equivalence(module, net, shape)
    with torch.no_grad():
        row["orig_ms"] = _median_ms(lambda: module(x), reps)
        row["macs"], row["ms"] = [], []
        for k in range(1, groups + 1):
            net.set_active_groups(k)
            row["macs"].append(sum(layer.macs for layer in net.layer_costs(k)))
            row["ms"].append(_median_ms(lambda: net(x), reps))
    row["bytes"] = stored_bytes(net)
    row["orig_bytes"] = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    row["others"] = _other_connectivities(module, shape, groups)
    return row


def _format(row: dict[str, Any], family: str, origin: str) -> str:
    head = f"| {family} | {row['name']} ({origin}) |"
    if "error" in row:
        return head + f" no: {row['error']} |" + " |" * 5
    macs = " / ".join(f"{m / 1e6:.0f}" for m in row["macs"])
    ms = " / ".join(f"{v:.1f}" for v in row["ms"])
    return (head + f" yes | {row['rel_error']:.1e} | {macs} | {ms} (orig {row['orig_ms']:.1f}) | "
            f"{row['bytes'] / row['orig_bytes']:.3f} | {row['seconds']:.1f} s | {row['others']} |")


def _torchvision() -> Any:
    try:
        import torchvision.models as tvm  # type: ignore[import-untyped]
    except Exception as exc:  # any failure means "not here"; say which
        print(f"torchvision does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:100]}); "
              "zoo models only")
        return None
    return tvm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated zoo names (default: all)")
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5, help="timed runs per k (median)")
    args = parser.parse_args(argv)
    names = args.models.split(",") if args.models else list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; the zoo has {', '.join(MODELS)}")
    tvm = _torchvision()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, G = {args.groups}, slimmable, l1 order, "
          "random init, batch 1")
    print("| family | model | converts | k=G rel. error | MMACs k=1..G | CPU ms k=1..G | bytes / orig | "
          "convert time | grouped, nested |")
    print("|---|---|---|---|---|---|---|---|---|")
    converted = 0
    for name in names:
        row = measure(name, MODELS[name], INPUT_SIZE[name], args.groups, args.reps)
        converted += "error" not in row
        print(_format(row, FAMILY[name], "zoo"), flush=True)
        if tvm is not None and hasattr(tvm, name):
            tv_row = measure(name, getattr(tvm, name), INPUT_SIZE[name], args.groups, args.reps)
            print(_format(tv_row, FAMILY[name], "torchvision"), flush=True)
    families = {FAMILY[n] for n in names}
    print(f"{converted} of {len(names)} models convert (slimmable), {len(families)} families")
    return 0 if converted == len(names) else 1


if __name__ == "__main__":
    raise SystemExit(main())
