"""`governor evaluate`: replay a request trace under our policy and the baselines on a simulated board.

    governor evaluate --board sim:jetson-nano --model alexnet --trace corunner --out eval/
    governor evaluate --generate bursty --requests 400 --seed 3 --out my-bursty.json

Writes ``report.md``, ``results.json`` and PNG plots under ``--out``; every figure is simulated.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from governor.cli import CliError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", help="simulated board, sim:NAME (e.g. sim:jetson-nano, sim:odroid-xu3)")
    parser.add_argument("--model", default="bundled",
                        help="bundled (digits model), alexnet[:G] (the paper's AlexNet workload) or a model file")
    parser.add_argument("--trace", default="steady",
                        help="a shipped trace (steady, bursty, budget-steps, corunner) or a trace file")
    parser.add_argument("--policy", action="append", default=[], metavar="NAME",
                        help="evaluate only these (repeat or comma-separate); default: all")
    parser.add_argument("--out", help="directory for report.md, results.json and plots (with --generate: the file)")
    parser.add_argument("--seed", type=int, default=0, help="simulator seed (default 0)")
    parser.add_argument("--tick-hz", type=float, default=10.0, help="daemon tick rate, Hz (default 10)")
    parser.add_argument("--profile", help="profile cache file (default: the one `governor serve` uses)")
    parser.add_argument("--profile-points", type=int, default=0, metavar="N",
                        help="most measurements when profiling (default: 24 per mapping)")
    parser.add_argument("--accuracy-from", help="model file whose per-k accuracies alexnet should use")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-range", action="store_true", help="skip the dynamic-range measurement")
    parser.add_argument("--generate", metavar="KIND", help="write a generated trace of KIND to --out and stop")
    parser.add_argument("--requests", type=int, default=600, help="with --generate: how many requests")
    parser.set_defaults(func=run)


def _policies(values: list[str]) -> tuple[str, ...]:
    return tuple(name.strip() for value in values for name in value.split(",") if name.strip())


def _generate(args: argparse.Namespace) -> int:
    from governor.evaluate import generate_trace, save_trace

    if not args.out:
        raise CliError("--generate needs --out FILE.json (where to write the trace)")
    try:
        trace = generate_trace(args.generate, requests=args.requests, seed=args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    path = save_trace(trace, Path(args.out))
    print(f"wrote {path}: {trace.name}, {len(trace.requests)} requests ({trace.description})")
    return 0


def _print_summary(evaluation: object) -> None:
    inputs = evaluation.inputs  # type: ignore[attr-defined]
    print(f"\n{inputs.trace} on {inputs.board} (SIMULATED), model {inputs.model}, {inputs.requests} requests, "
          f"{inputs.feasible} feasible")
    print(f"{'policy':<12} {'deadlines':>9} {'feasible':>9} {'mJ/req':>8} {'run mJ':>8} {'idle mJ':>8} "
          f"{'vs oracle':>9} {'acc %':>6}")
    for m in inputs.metrics:
        ratio = f"{m.energy_vs_oracle:.3f}" if m.energy_vs_oracle is not None else "-"
        acc = f"{m.accuracy_pct:.2f}" if m.accuracy_pct is not None else "-"
        print(f"{m.policy:<12} {m.deadlines_met_pct:>8.1f}% {m.feasible_met_pct:>8.1f}% "
              f"{m.energy_per_request_mj:>8.2f} {m.run_energy_per_request_mj:>8.2f} "
              f"{m.idle_energy_per_request_mj:>8.2f} {ratio:>9} {acc:>6}")
    for check in inputs.targets:
        verdict = "-" if check.met is None else ("met" if check.met else "MISSED")
        print(f"target {check.name}: {check.value} (need {check.target}): {verdict}")


def run(args: argparse.Namespace) -> int:
    if args.generate:
        return _generate(args)
    if not args.board:
        raise CliError("--board sim:NAME is required (evaluation runs on simulated boards)")
    if not args.out:
        raise CliError("--out DIR is required (where report.md, results.json and the plots go)")
    from governor.evaluate import EvalConfig, EvaluateError, evaluate
    from governor.evaluate.traces import TraceError

    config = EvalConfig(
        board=args.board, model=args.model, trace=args.trace, policies=_policies(args.policy), out=Path(args.out),
        seed=args.seed, tick_hz=args.tick_hz, profile_cache=Path(args.profile) if args.profile else None,
        profile_points=args.profile_points, accuracy_from=Path(args.accuracy_from) if args.accuracy_from else None,
        plots=not args.no_plots, measure_range=not args.no_range)
    try:
        evaluation = evaluate(config)
    except (EvaluateError, TraceError) as exc:
        raise CliError(str(exc)) from exc
    _print_summary(evaluation)
    print(f"\nreport: {Path(args.out) / 'report.md'} (every figure simulated)")
    return 0
