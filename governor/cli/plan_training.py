"""`governor plan-training MODEL --memory-budget MB`: which k and batch sizes can be trained on this device.

The predictors are fitted to one or more training profiles (`governor profile MODEL --training`),
the device's fingerprint; MODEL may be another network than the profiled one. Memory is the peak
increment of a training step over an idle torch process (``--include-runtime`` adds the idle
process measured while profiling); time is one step (forward, loss, backward, optimiser step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from governor.cli.main import CliError
from governor.cli.training_profile import ARCHS, DEFAULT_BATCH_SIZES, default_profile_path, int_list, parse_arch


def register(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("model", metavar="MODEL", help=f"model file, or {' | '.join(ARCHS)} with an optional :G (groups)")
    add("--memory-budget", type=float, required=True, metavar="MB", help="memory a training step may use")
    add("--time-budget", type=float, metavar="S", help="longest acceptable training step, in seconds")
    add("--batch-sizes", type=int_list, default=DEFAULT_BATCH_SIZES, metavar="LIST")
    add("--groups", type=int_list, metavar="LIST", help="active group counts k to consider (default: all)")
    add("--profile", type=Path, action="append", metavar="PATH",
        help="training profile(s) to learn from (repeatable; default: MODEL.training.json)")
    add("--method", choices=("hybrid", "trees", "linear"), default="hybrid",
        help="hybrid: linear model corrected by ExtraTrees (default); trees: perf4sight's ExtraTrees on the "
             "raw targets; linear: the linear model alone (every method uses it outside the profiled range)")
    add("--clock", choices=("wall", "cpu"), default="wall",
        help="latency from wall time (default) or, for single-threaded profiles, the step's CPU time")
    add("--sigmas", type=float, default=2.0, help="a point fits when prediction + SIGMAS x sd is within budget")
    add("--include-runtime", action="store_true", help="add the idle torch process's memory to each prediction")
    add("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run)


def _load_profiles(paths: list[Path]) -> list[Any]:
    from governor.core.training.cost import TrainingProfileFileError, parse_training_profile

    profiles = []
    for path in paths:
        try:
            profiles.append(parse_training_profile(path.read_bytes()))
        except FileNotFoundError:
            raise CliError(f"training profile {path} does not exist; measure one with "
                           "`governor profile MODEL --training` or pass --profile") from None
        except TrainingProfileFileError as exc:
            raise CliError(f"{path}: {exc}") from exc
    devices = {(p.device, p.threads, p.optimizer, p.host) for p in profiles}
    if len(devices) > 1:
        raise CliError(f"the profiles come from different devices/settings {sorted(devices)}; "
                       "pass profiles of one device, thread count and optimiser")
    return profiles


def _networks(model: str, ks: tuple[int, ...] | None) -> dict[int, Any]:
    from governor.core.modelmeta import ModelFileError, read_model_meta
    from governor.core.training.features import network_from_meta

    arch = parse_arch(model)
    if arch is not None:
        from governor.runtime.training_profile import dynamic_net_factories, trace_network

        networks = {k: trace_network(make(), (3, 32, 32))[0] for k, make in dynamic_net_factories(*arch).items()
                    if ks is None or k in ks}
    else:
        try:
            with Path(model).open("rb") as stream:
                meta = read_model_meta(stream)
        except (OSError, ModelFileError) as exc:
            raise CliError(f"{model}: {exc}; give a model file or one of {', '.join(ARCHS)}") from exc
        networks = {k: network_from_meta(meta, k) for k in range(1, meta.groups + 1) if ks is None or k in ks}
    if not networks:
        raise CliError(f"--groups {list(ks or ())} selects no group count of {model}")
    return networks


def _same_model(a: str, b: str) -> bool:
    """``resnet-small`` and ``resnet-small:4`` are one model; files compare by resolved path."""
    arch_a, arch_b = parse_arch(a), parse_arch(b)
    if arch_a or arch_b:
        return arch_a == arch_b
    return Path(a).resolve() == Path(b).resolve()


def _measured(profiles: list[Any], model: str) -> dict[tuple[int, int], Any]:
    return {(r.groups, r.batch): r for p in profiles if _same_model(p.model, model) for r in p.rows}


def run(args: argparse.Namespace) -> int:
    from governor.core.training.cost import TrainingCostModel, plan_training, samples_from_profile

    if args.memory_budget <= 0 or (args.time_budget is not None and args.time_budget <= 0) or args.sigmas < 0:
        raise CliError("--memory-budget and --time-budget must be positive, --sigmas not negative")
    profiles = _load_profiles(args.profile or [default_profile_path(args.model)])
    samples = [s for p in profiles for s in samples_from_profile(p, clock=args.clock)]
    if args.clock == "cpu" and not samples:
        raise CliError("these profiles hold no CPU times: --clock cpu needs a profile measured with "
                       "--training-threads 1")
    try:
        cost = TrainingCostModel.fit(samples, method=args.method, optimizer=profiles[0].optimizer)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    idle = max((r.idle_rss_mb for p in profiles for r in p.rows if r.idle_rss_mb is not None), default=0.0)
    offset = idle if args.include_runtime else 0.0
    time_ms = None if args.time_budget is None else 1000.0 * args.time_budget
    rows = plan_training(cost, _networks(args.model, args.groups), args.batch_sizes, args.memory_budget, time_ms,
                         sigmas=args.sigmas, memory_offset_mb=offset)
    measured = _measured(profiles, args.model)
    if args.json:
        print(json.dumps(_as_json(rows, measured, profiles, offset), indent=1))
    else:
        _print_table(rows, measured, profiles, idle, args)
    return 0 if any(r.fits == "yes" for r in rows) else 1


def _as_json(rows: list[Any], measured: dict[tuple[int, int], Any], profiles: list[Any],
             offset: float) -> dict[str, Any]:
    return {
        "device": profiles[0].device, "host": profiles[0].host, "simulated": any(p.simulated for p in profiles),
        "memory_metric": profiles[0].memory_metric, "memory_offset_mb": offset,
        "points": [{
            "groups": r.groups, "batch": r.batch, "fits": r.fits, "memory_mb": r.memory_mb,
            "memory_sd_mb": r.prediction.memory_sd_mb, "latency_ms": r.prediction.latency_ms,
            "latency_sd_ms": r.prediction.latency_sd_ms, "inside_profiled_range": r.prediction.inside,
            "architecture_profiled": r.prediction.architecture_profiled,
            "measured": _measured_json(measured.get((r.groups, r.batch))),
        } for r in rows],
    }


def _measured_json(row: Any) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"passed": row.passed, "memory_mb": row.memory_mb, "latency_ms": row.latency_ms, "reason": row.reason}


def _print_table(rows: list[Any], measured: dict[tuple[int, int], Any], profiles: list[Any], idle: float,
                 args: argparse.Namespace) -> None:
    p0 = profiles[0]
    offset = idle if args.include_runtime else 0.0
    print(f"device {p0.device} ({p0.host}, {p0.threads} torch thread(s), {p0.optimizer}); "
          f"{sum(len(p.rows) for p in profiles)} profiled points; predictor: {args.method}, clock: {args.clock}")
    basis = "included" if args.include_runtime else "not included; --include-runtime adds it"
    print(f"memory = peak increment of a training step over an idle torch process ({idle:.0f} MB, {basis}); "
          f"fits = prediction + {args.sigmas:g} sd within budget")
    table = [("k", "batch", "memory MB", "step ms", "samples/s", "range", "measured", "fits")]
    for r in rows:
        p, m = r.prediction, measured.get((r.groups, r.batch))
        seen = "-" if m is None else (f"{m.memory_mb + offset:.0f} MB {m.latency_ms:.0f} ms" if m.passed else "failed")
        table.append((str(r.groups), str(r.batch), f"{r.memory_mb:.0f} ± {p.memory_sd_mb:.0f}",
                      f"{p.latency_ms:.0f} ± {p.latency_sd_ms:.0f}", f"{1000 * r.batch / p.latency_ms:.0f}",
                      "inside" if p.inside else "extrap." if p.architecture_profiled else "other arch", seen, r.fits))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    best = {}
    for r in rows:
        if r.fits == "yes":
            best[r.groups] = r.batch
    summary = ", ".join(f"k={k}: batch <= {b}" for k, b in sorted(best.items())) or "nothing fits"
    print(f"fits within {args.memory_budget:g} MB" + (f" and {args.time_budget:g} s/step" if args.time_budget else "")
          + f": {summary}")
