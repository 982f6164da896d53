"""The evaluation's report: a markdown page and a JSON document, both labelled simulated throughout."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governor.evaluate.dynrange import PAPER_RANGES, DynamicRange
from governor.evaluate.metrics import PolicyMetrics, TargetCheck

__all__ = ["ReportInputs", "render_markdown", "write_json", "write_markdown"]


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report shows; ``figures`` are file names relative to the report."""

    board: str
    model: str
    accuracy_source: str
    trace: str
    trace_description: str
    requests: int
    feasible: int
    ref_ms: float
    duration_s: float
    baseline_mapping: str
    profile_points: int
    tick_hz: float
    seed: int
    metrics: Sequence[PolicyMetrics]
    targets: Sequence[TargetCheck]
    dynamic_range: DynamicRange | None
    figures: Sequence[str]
    notes: Sequence[str] = ()
    simulated: bool = True
    idle_floor_mw: float = 0.0


def _f(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _policy_table(metrics: Sequence[PolicyMetrics]) -> list[str]:
    rows = ["| policy | deadlines met | of feasible | floors met | energy/request: active | board | run | idle | "
            "vs oracle (active / board) | accuracy | p50 / p99 ms | mean k | mappings |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in metrics:
        maps = ", ".join(f"{k} {v}" for k, v in m.mappings.items())
        rows.append(f"| {m.policy} | {m.deadlines_met_pct:.1f} % | {m.feasible_met_pct:.1f} % | "
                    f"{m.floors_met_pct:.1f} % | {m.active_energy_per_request_mj:.2f} mJ | "
                    f"{m.energy_per_request_mj:.2f} mJ | "
                    f"{_f(m.run_energy_per_request_mj)} mJ | {_f(m.idle_energy_per_request_mj)} mJ | "
                    f"{_f(m.active_energy_vs_oracle, '.3f')} / "
                    f"{_f(m.energy_vs_oracle, '.3f')} | {_f(m.accuracy_pct)} % | {m.p50_ms:.2f} / "
                    f"{m.p99_ms:.2f} | {m.mean_k:.2f} | {maps} |")
    return rows


def _targets(checks: Sequence[TargetCheck]) -> list[str]:
    rows = ["| target | value | required | met |", "|---|---|---|---|"]
    for c in checks:
        rows.append(f"| {c.name} | {c.value} | {c.target} | {'-' if c.met is None else ('yes' if c.met else 'NO')} |")
    return rows


def _ranges(dr: DynamicRange) -> list[str]:
    rows = [f"## Dynamic range (simulated, {dr.board}, {dr.model})", "",
            "| knobs | time max/min | energy max/min | paper (time / energy) | fastest | slowest | cheapest | "
            "dearest |", "|---|---|---|---|---|---|---|---|"]
    for label, fig in (("groups only", dr.groups_only), ("groups + DVFS + mapping", dr.full)):
        paper = PAPER_RANGES[label]
        rows.append(f"| {label} | {fig.time_ratio:.2f}x | {fig.energy_ratio:.2f}x | {paper[0]}x / {paper[1]}x | "
                    f"{fig.fastest} | {fig.slowest} | {fig.cheapest} | {fig.dearest} |")
    return [*rows, "", "The paper's figures are for its own boards (measured); ours are simulated max/min ratios "
            "of the same knobs. Its abstract words them as a widening against earlier dynamic DNNs, so the "
            "comparison is loose."]


def render_markdown(r: ReportInputs) -> str:
    lines = [
        f"# governor evaluate: {r.trace} on {r.board} (SIMULATED)", "",
        "**Every figure on this page is simulated** (the `sim:` board's physics model, virtual time); "
        "nothing here was measured on hardware.", "",
        f"- board: `{r.board}` (simulated); model: `{r.model}`; accuracy per k: {r.accuracy_source}",
        f"- trace: `{r.trace}`: {r.trace_description}",
        f"- {r.requests} requests over {r.duration_s:.2f} s of virtual time; {r.feasible} feasible "
        f"({100.0 * r.feasible / max(r.requests, 1):.1f} %); 1 ref = {r.ref_ms:.3f} ms "
        "(fastest full-network run, top clocks, idle board)",
        f"- baseline mapping (performance, schedutil, ondemand, groups-only, dvfs-only): {r.baseline_mapping}",
        f"- profile: {r.profile_points} operating points; daemon tick {r.tick_hz:g} Hz; seed {r.seed}", "",
        "## Policies", "", *_policy_table(r.metrics), "",
        "Energy per request (board) is the simulated input-rail energy over the whole replay, idle time "
        "included, divided by the requests; run is the mean energy of the runs alone and idle the rest "
        "(board energy outside runs, per request). Active is board energy above the board's idle floor "
        f"({r.idle_floor_mw:.1f} mW: nothing running, clocks left to the kernel governors), which every "
        "policy pays for the whole replay; it is what a policy causes, and the energy targets are judged "
        "on it. Deadlines are judged from the true arrival time, queueing included.", "",
        "## Targets", "", *_targets(r.targets), "",
    ]
    if r.dynamic_range is not None:
        lines += [*_ranges(r.dynamic_range), ""]
    if r.notes:
        lines += ["## Notes", "", *(f"- {n}" for n in r.notes), ""]
    if r.figures:
        lines += ["## Figures (simulated)", "", *(f"![{name}]({name})" for name in r.figures), ""]
    return "\n".join(lines)


def write_markdown(r: ReportInputs, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_markdown(r), encoding="utf-8")
    return path


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(r: ReportInputs, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(r), indent=2) + "\n", encoding="utf-8")
    return path
