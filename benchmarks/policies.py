"""Headline comparison of `governor evaluate`: ours against the baselines, on simulated boards (all simulated).

For every board and shipped trace (600 requests each, reference-latency units) it replays the trace
through the real daemon under every policy, prints deadlines met, energy per request (board, idle
included, and run-only), accuracy and energy relative to the oracle, checks the issue's targets,
and measures the dynamic range of the paper's AlexNet. Profiles are measured once per board and
cached in --profile-dir.

    python benchmarks/policies.py [--boards sim:jetson-nano,sim:odroid-xu3] [--traces steady,bursty,...]
                                  [--model alexnet] [--jobs 2] [--out DIR] [--profile-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from governor.evaluate import EvalConfig, evaluate, shipped_traces
from governor.evaluate.metrics import PolicyMetrics
from governor.evaluate.models import resolve_model
from governor.evaluate.report import ReportInputs
from governor.evaluate.session import profile_model


def _cache(profile_dir: Path, board: str, model: str) -> Path:
    return profile_dir / f"{board.replace(':', '-')}-{model.replace(':', '-')}.json"


def _one(board: str, trace: str, args: argparse.Namespace) -> tuple[str, str, ReportInputs, float]:
    start = time.perf_counter()
    out = Path(args.out) / board.replace(":", "-") / trace if args.out else None
    ev = evaluate(EvalConfig(board=board, model=args.model, trace=trace, out=out, plots=out is not None,
                             profile_cache=_cache(Path(args.profile_dir), board, args.model),
                             measure_range=trace == args.traces[0]), say=lambda _m: None)
    return board, trace, ev.inputs, time.perf_counter() - start


def _print(board: str, trace: str, i: ReportInputs, seconds: float) -> None:
    print(f"\n## {trace} on {board} (SIMULATED), {i.model}, {i.requests} requests ({i.feasible} feasible), "
          f"1 ref = {i.ref_ms:.3f} ms, {seconds:.0f} s wall")
    print(f"{'policy':<12} {'deadlines':>9} {'feasible':>9} {'active':>8} {'board':>8} {'run mJ':>8} {'idle mJ':>8} "
          f"{'vs oracle':>9} {'acc %':>6}")
    for m in i.metrics:
        print(f"{m.policy:<12} {m.deadlines_met_pct:>8.1f}% {m.feasible_met_pct:>8.1f}% "
              f"{m.active_energy_per_request_mj:>8.2f} {m.energy_per_request_mj:>8.2f}"
              f" {m.run_energy_per_request_mj:>8.2f} {m.idle_energy_per_request_mj:>8.2f}"
              f" {m.active_energy_vs_oracle or float('nan'):>9.3f} "
              f"{m.accuracy_pct or float('nan'):>6.2f}")
    for t in i.targets:
        verdict = "-" if t.met is None else ("met" if t.met else "MISSED")
        print(f"  target {t.name}: {t.value} (need {t.target}): {verdict}")
    dr = i.dynamic_range
    if dr is not None:
        print(f"  dynamic range: groups only {dr.groups_only.time_ratio:.2f}x time / "
              f"{dr.groups_only.energy_ratio:.2f}x energy; groups + DVFS + mapping {dr.full.time_ratio:.1f}x / "
              f"{dr.full.energy_ratio:.1f}x (paper: 2.73x / 2.36x and 41.6x / 10.6x)")


def _headline(results: list[tuple[str, str, ReportInputs, float]]) -> None:
    print("\n## Headline: ours against each baseline, per board, over all traces (SIMULATED)")
    for board in dict.fromkeys(r[0] for r in results):
        rows = [r[2] for r in results if r[0] == board]
        by_policy: dict[str, list[PolicyMetrics]] = {}
        for inputs in rows:
            for m in inputs.metrics:
                by_policy.setdefault(m.policy, []).append(m)
        ours = by_policy.get("ours", [])
        print(f"{board}: {'policy':<12} {'deadlines':>9} {'active mJ':>9} {'board mJ':>9}  "
              "ours' saving (active / board)")
        for name, ms in by_policy.items():
            met = statistics.fmean(m.deadlines_met_pct for m in ms)
            active_mj = sum(m.active_energy_per_request_mj for m in ms)
            board_mj = sum(m.energy_per_request_mj for m in ms)
            ours_active = sum(m.active_energy_per_request_mj for m in ours)
            ours_board = sum(m.energy_per_request_mj for m in ours)
            print(f"{'':<{len(board) + 2}}{name:<12} {met:>8.1f}% {active_mj:>9.2f} {board_mj:>9.2f}  "
                  f"{100 * (1 - ours_active / active_mj):+.1f} % / {100 * (1 - ours_board / board_mj):+.1f} %")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", default="sim:jetson-nano,sim:odroid-xu3")
    parser.add_argument("--traces", default=",".join(shipped_traces()))
    parser.add_argument("--model", default="alexnet")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", help="also write each evaluation's report and plots under DIR/<board>/<trace>")
    parser.add_argument("--profile-dir", default=str(Path(tempfile.gettempdir()) / "governor-bench-profiles"))
    args = parser.parse_args()
    args.traces = args.traces.split(",")
    boards = args.boards.split(",")
    Path(args.profile_dir).mkdir(parents=True, exist_ok=True)
    model = resolve_model(args.model, bundled_dir=Path(args.profile_dir) / "models")
    for board in boards:  # once per board, before the parallel replays read the cache
        profile_model(board, model, cache=_cache(Path(args.profile_dir), board, args.model), say=lambda _m: None)
    print(f"# governor evaluate benchmark (SIMULATED): model {model.name}, accuracy {model.accuracy_source}")
    with ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        futures = [pool.submit(_one, b, t, args) for b in boards for t in args.traces]
        results = [f.result() for f in futures]
    for result in results:
        _print(*result)
    _headline(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
