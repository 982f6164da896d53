"""One evaluation end to end: profile once, replay the trace under every policy, score, report, plot.

The profile is measured once per (board, model) on a fresh idle simulated board through the drivers
with the active sampler (:func:`governor.daemon.profiling.board_table`) and cached where
``governor serve`` keeps its own (``<state dir>/profiles/<model>/sim-<board>.json``), so a served
simulated board and an evaluation share it. Every policy then replays the same trace on its own
fresh board with the same seed (:func:`governor.evaluate.replay.replay`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from governor.core.board import BoardSpec, profile_label
from governor.daemon.backend import SimBackend
from governor.daemon.profiling import board_table
from governor.daemon.tables import MeasuredTable
from governor.daemon.target import TargetError, open_target
from governor.evaluate.dynrange import DynamicRange, describe, dynamic_range
from governor.evaluate.metrics import PolicyMetrics, check_targets, summarise
from governor.evaluate.models import EvalModel, ModelError, resolve_model
from governor.evaluate.oracle import TrueContention, feasible
from governor.evaluate.policies import Policy, PolicyContext, baseline_row, make_policies
from governor.evaluate.replay import PolicyRun, ReplaySetup, idle_floor_mw, replay
from governor.evaluate.report import ReportInputs, write_json, write_markdown
from governor.evaluate.traces import Trace, TraceError, load_trace, resolve
from governor.sim import SIM_PREFIX, SimExecutor

__all__ = ["EvalConfig", "EvaluateError", "Evaluation", "evaluate", "find_trace", "profile_model", "shipped_traces"]

DATA_DIR = Path(__file__).parent / "data"


class EvaluateError(ValueError):
    """The evaluation cannot run as asked; the message says what to change."""


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. ``trace`` is a shipped trace name or a file; ``policies`` empty = all."""

    board: str
    model: str = "bundled"
    trace: str = "steady"
    policies: tuple[str, ...] = ()
    out: Path | None = None
    seed: int = 0
    tick_hz: float = 10.0
    profile_cache: Path | None = None
    profile_points: int = 0
    accuracy_from: Path | None = None
    bundled_dir: Path | None = None
    plots: bool = True
    measure_range: bool = True


@dataclass
class Evaluation:
    inputs: ReportInputs
    runs: list[PolicyRun]
    ctx: PolicyContext
    files: list[Path] = field(default_factory=list)


def shipped_traces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(DATA_DIR.glob("*.json"))}


def find_trace(name_or_path: str) -> Trace:
    """A shipped trace by name, or a trace file."""
    shipped = shipped_traces()
    if name_or_path in shipped:
        return load_trace(shipped[name_or_path])
    path = Path(name_or_path)
    if not path.exists():
        raise TraceError(f"trace {name_or_path!r} is neither a shipped trace ({', '.join(shipped)}) nor a file")
    return load_trace(path)


def _default_cache(board: str, model: EvalModel) -> Path:
    from governor.daemon.config import default_state_dir

    return default_state_dir() / "profiles" / model.name / f"{profile_label(board[len(SIM_PREFIX):], True)}.json"


def profile_model(board: str, model: EvalModel, *, cache: Path | None, max_points: int = 0, seed: int = 0,
                  say: Callable[[str], None] = print) -> tuple[MeasuredTable, BoardSpec, dict[str, tuple[int, ...]]]:
    """The decision table of ``model`` on ``board`` (cached), the board's spec and its OPPs per domain (Hz)."""
    target = open_target(board, clock="virtual", seed=seed)
    try:
        assert target.sim is not None
        backend = SimBackend(SimExecutor(target.sim, model.workload), None, len(model.meta.classes))
        table = board_table(target, backend, model.meta, say=say, cache=cache, model_name=model.name,
                            max_points=max_points)
        domain_hz = {n: tuple(sorted(d.available_hz())) for n, d in target.board.domains.items()}
        return table, target.spec, domain_hz
    finally:
        target.close()


def _prepare(cfg: EvalConfig, say: Callable[[str], None]) -> tuple[list[Policy], Trace, EvalModel]:
    if not cfg.board.startswith(SIM_PREFIX):
        raise EvaluateError(f"--board {cfg.board!r}: evaluation runs on simulated boards only; use sim:NAME "
                            "(see `governor boards`)")
    if cfg.tick_hz <= 0:
        raise EvaluateError("the tick rate must be positive (Hz)")
    try:
        policies = make_policies(cfg.policies)
        trace = find_trace(cfg.trace)
        model = resolve_model(cfg.model, bundled_dir=cfg.bundled_dir or _bundled_dir(),
                              accuracy_from=cfg.accuracy_from)
    except (ValueError, ModelError) as exc:
        raise EvaluateError(str(exc)) from exc
    return policies, trace, model


def _bundled_dir() -> Path:
    from governor.daemon.config import default_state_dir

    return default_state_dir() / "models"


def evaluate(cfg: EvalConfig, *, say: Callable[[str], None] = print) -> Evaluation:
    """Run the whole evaluation; writes the report, JSON and plots under ``cfg.out`` when given."""
    policies, trace, model = _prepare(cfg, say)
    cache = cfg.profile_cache or _default_cache(cfg.board, model)
    try:
        table, spec, domain_hz = profile_model(cfg.board, model, cache=cache, max_points=cfg.profile_points,
                                               seed=cfg.seed, say=say)
    except TargetError as exc:
        raise EvaluateError(str(exc)) from exc
    ctx = _context(trace, model, table, spec, domain_hz)
    flags = feasible(table.table, ctx.contention, ctx.trace.arrivals)
    setup = ReplaySetup(cfg.board, model.name, model.meta, model.workload, seed=cfg.seed, tick_hz=cfg.tick_hz)
    runs = []
    for policy in policies:
        say(f"replaying {trace.name} ({len(trace.requests)} requests) under {policy.name} (simulated)")
        runs.append(replay(policy, ctx, setup))
    floor_mw = idle_floor_mw(cfg.board, seed=cfg.seed)
    metrics = summarise(runs, {p.name: p.summary for p in policies}, flags, floor_mw)
    dr = dynamic_range(ctx, cfg.board, model, seed=cfg.seed) if cfg.measure_range else None
    inputs = _inputs(cfg, trace, model, ctx, runs, metrics, flags, dr, floor_mw)
    evaluation = Evaluation(inputs, runs, ctx)
    if cfg.out is not None:
        evaluation.files = _write(cfg.out, evaluation, say)
    return evaluation


def _context(trace: Trace, model: EvalModel, table: MeasuredTable, spec: BoardSpec,
             domain_hz: dict[str, tuple[int, ...]]) -> PolicyContext:
    row = baseline_row(table.table)
    base = table.table.points[row]
    try:
        resolved = resolve(trace, ref_ms=float(table.table.latency_ms[row]), groups=model.meta.groups,
                           accuracy_of=model.meta.accuracy, units=[(u.name, u.kind) for u in spec.units],
                           inference_unit=base.unit)
    except TraceError as exc:
        raise EvaluateError(str(exc)) from exc
    return PolicyContext(spec, table, resolved, TrueContention(table.table, spec, resolved.scenario), domain_hz)


def _inputs(cfg: EvalConfig, trace: Trace, model: EvalModel, ctx: PolicyContext, runs: list[PolicyRun],
            metrics: list[PolicyMetrics], flags: list[bool], dr: DynamicRange | None, floor_mw: float) -> ReportInputs:
    notes = ["The oracle decides with the simulator's true contention of every point over the coming "
             "deadline window and its true thermal caps; ours infers both from what the drivers read."]
    if model.accuracy_source.startswith("assumed"):
        notes.append(f"Accuracies of {model.name} are assumed ({model.accuracy_source}); floors are sub-network "
                     "levels, so decisions do not depend on them, only the accuracy column does.")
    figures = ["energy_vs_deadlines.png", *(f"timeline_{r.policy}.png" for r in runs)] if cfg.plots else []
    return ReportInputs(
        board=cfg.board, model=model.name, accuracy_source=model.accuracy_source, trace=trace.name,
        trace_description=trace.description, requests=len(flags), feasible=sum(flags),
        ref_ms=float(ctx.profile.table.latency_ms[ctx.baseline_row]),
        duration_s=max((r.duration_s for r in runs), default=0.0),
        baseline_mapping=describe(ctx.profile.table.points[ctx.baseline_row]),
        profile_points=len(ctx.profile.table), tick_hz=cfg.tick_hz, seed=cfg.seed, metrics=metrics,
        targets=check_targets(metrics), dynamic_range=dr, figures=figures, notes=notes, idle_floor_mw=floor_mw)


def _write(out: Path, ev: Evaluation, say: Callable[[str], None]) -> list[Path]:
    files = [write_markdown(ev.inputs, out / "report.md"), write_json(ev.inputs, out / "results.json")]
    if ev.inputs.figures:
        from governor.evaluate.plots import PlotsUnavailable, plot_energy_vs_deadlines, plot_timeline

        title = f"{ev.inputs.trace} on {ev.inputs.board}, {ev.inputs.model}"
        groups = max(point.groups for point in ev.ctx.profile.table.points)
        try:
            files.append(plot_energy_vs_deadlines(ev.inputs.metrics, out / "energy_vs_deadlines.png", title))
            for run in ev.runs:
                files.append(plot_timeline(run, ev.ctx.trace, out / f"timeline_{run.policy}.png",
                                           f"{run.policy}: {title}", groups))
        except PlotsUnavailable as exc:
            say(f"no plots: {exc}")
    return files
