"""Body of `governor profile MODEL --training`: measure training steps per (active groups k, batch size).

MODEL is a model file (from `governor train`) or ``ARCH[:G]`` (a freshly initialised dynamic network
with G groups, default 4; a training step's cost does not depend on the weight values). The result is
a training profile (JSON) that `governor plan-training` fits its predictors to. The profile command
calls :func:`register_training_args` on its parser and :func:`run_training` when ``--training`` is
given; every option here is prefixed so that it cannot collide with the inference profile's.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from governor.cli.main import CliError

ARCHS = ("alexnet-cifar", "resnet-small")
DEFAULT_BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128, 256)


def int_list(text: str) -> tuple[int, ...]:
    """``"2,4,8"`` -> (2, 4, 8); every entry a positive integer."""
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers, e.g. 2,4,8,16")
    return values


def register_training_args(parser: argparse.ArgumentParser) -> None:
    """Add the ``--training`` options (all but --batch-sizes and --memory-cap prefixed with training-)."""
    group = parser.add_argument_group("training profile (with --training)")
    add = group.add_argument
    add("--batch-sizes", type=int_list, default=DEFAULT_BATCH_SIZES, metavar="LIST",
        help="batch sizes to try, ascending; a k stops at its first failure (default 2,4,...,256)")
    add("--training-groups", type=int_list, metavar="LIST", help="active group counts k (default: all)")
    add("--memory-cap", type=float, metavar="MB",
        help="stop a point whose memory increment passes this (default: 80%% of MemAvailable)")
    add("--training-passes", type=int, default=1, metavar="N",
        help="measure every point N times and keep the least contended (default 1)")
    add("--training-repeats", type=int, default=5, metavar="N", help="timed steps per point (default 5)")
    add("--training-warmup", type=int, default=2, metavar="N", help="untimed steps first (default 2)")
    add("--training-threads", type=int, metavar="N", help="torch threads (default: every CPU allowed)")
    add("--training-optimizer", choices=("sgd", "adam"), default="sgd", help="optimiser of the step (default sgd)")
    add("--training-device", default="cpu", metavar="DEV", help="cpu or cuda[:N] (default cpu)")
    add("--training-out", type=Path, metavar="PATH", help="profile to write (default: MODEL.training.json)")


def register(parser: argparse.ArgumentParser) -> None:
    """Stand-alone form for tests and scripts: ``MODEL`` plus the training options."""
    parser.add_argument("model", metavar="MODEL", help="model file or ARCH[:G]")
    register_training_args(parser)
    parser.set_defaults(func=run_training)


def default_profile_path(model: str) -> Path:
    """Where the profile of MODEL goes unless told: next to a model file, else in the working directory."""
    path = Path(model)
    if path.is_file():
        return path.with_name(path.name + ".training.json")
    return Path(model.replace(":", "-g") + ".training.json")


def parse_arch(model: str) -> tuple[str, int] | None:
    """``"resnet-small:4"`` -> ("resnet-small", 4); None when MODEL is not an architecture name."""
    arch, _, groups = model.partition(":")
    if arch not in ARCHS:
        return None
    try:
        count = int(groups or 4)
    except ValueError:
        raise CliError(f"{model!r}: write ARCH:G with G the number of groups, e.g. {arch}:4") from None
    if count < 1:
        raise CliError(f"{model!r}: the number of groups must be at least 1")
    return arch, count


def _factories(model: str, ks: tuple[int, ...] | None) -> tuple[dict[int, Any], tuple[int, ...]]:
    from governor.core.modelmeta import ModelFileError, read_model_meta
    from governor.runtime.training_profile import dynamic_net_factories, model_file_factories

    arch = parse_arch(model)
    if arch is not None:
        factories = dynamic_net_factories(arch[0], arch[1])
    else:
        path = Path(model)
        if not path.is_file():
            raise CliError(f"{model} is neither a model file nor one of {', '.join(ARCHS)} (optionally :G)")
        try:
            with path.open("rb") as stream:
                groups = read_model_meta(stream).groups
        except ModelFileError as exc:
            raise CliError(f"{path}: {exc}") from exc
        factories = model_file_factories(path, range(1, groups + 1))
    chosen = ks or tuple(factories)
    unknown = sorted(set(chosen) - set(factories))
    if unknown:
        raise CliError(f"--training-groups {unknown} out of range: MODEL has groups 1..{max(factories)}")
    return {k: factories[k] for k in chosen}, chosen


def _print_row(row: Any, n: int) -> None:
    if row.passed:
        print(f"pass {n}  k={row.groups:<3} batch={row.batch:<5} memory {row.memory_passes_mb[-1]:8.1f} MB  "
              f"step {row.latency_passes_ms[-1]:9.1f} ms  contention {100 * (row.contention or 0):3.0f}%", flush=True)
    else:
        print(f"pass {n}  k={row.groups:<3} batch={row.batch:<5} FAILED: {row.reason}", flush=True)


def run_training(args: argparse.Namespace) -> int:
    """Measure, write the profile, print where it went. Memory failures are rows, not errors."""
    from governor.runtime.training_profile import (
        StepOptions,
        TrainingProfileError,
        default_memory_cap_mb,
        profile_training,
    )

    if min(args.training_passes, args.training_repeats) < 1 or args.training_warmup < 0:
        raise CliError("--training-passes and --training-repeats must be >= 1, --training-warmup >= 0")
    out = args.training_out or (Path(args.out) if getattr(args, "out", None) else default_profile_path(args.model))
    if not out.parent.is_dir():
        raise CliError(f"directory {out.parent} does not exist; create it or choose another --training-out")
    # `governor profile` has its own --groups (same meaning); either selects the k values.
    factories, ks = _factories(args.model, args.training_groups or getattr(args, "groups", None) or None)
    options = StepOptions(warmup=args.training_warmup, repeats=args.training_repeats,
                          threads=args.training_threads, memory_cap_mb=args.memory_cap,
                          optimizer=args.training_optimizer, device=args.training_device)
    if options.memory_cap_mb is None and options.device == "cpu":
        options = dataclasses.replace(options, memory_cap_mb=default_memory_cap_mb())
    input_shape = _input_shape(args.model)
    print(f"profiling {args.model}: k in {list(ks)}, batch sizes {list(args.batch_sizes)}, "
          f"memory cap {options.memory_cap_mb or 0:.0f} MB", file=sys.stderr)
    try:
        profile = profile_training(factories, input_shape, args.batch_sizes, options,
                                   passes=args.training_passes, model_name=args.model, on_row=_print_row)
    except TrainingProfileError as exc:
        raise CliError(str(exc)) from exc
    out.write_text(profile.to_json(), encoding="utf-8")
    passed = sum(row.passed for row in profile.rows)
    print(f"wrote {out}: {passed} of {len(profile.rows)} points passed; "
          f"next: governor plan-training {args.model} --profile {out} --memory-budget MB")
    return 0


def _input_shape(model: str) -> tuple[int, int, int]:
    if parse_arch(model) is not None:
        return (3, 32, 32)
    from governor.core.modelmeta import read_model_meta

    with Path(model).open("rb") as stream:
        return read_model_meta(stream).input_shape
