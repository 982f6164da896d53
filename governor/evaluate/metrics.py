"""Per-policy figures from a replay, and the issue's targets checked against them. All simulated.

Definitions (also in ``docs/evaluate.md``):

* *deadlines met*: finished within the deadline counted from the true arrival (queueing
  included), as a share of all requests of the trace; a request never served counts as missed;
* *feasible*: some operating point meeting the request's accuracy floor finishes within its
  deadline on an idle queue at the true contention (:func:`governor.evaluate.oracle.feasible`);
* *energy per request*: the board's simulated input-rail energy over the whole replay (idle time
  included) divided by the number of requests; *run energy* is the mean energy of the runs alone,
  and *idle energy* the rest (board energy outside runs, per request);
* *active energy per request*: board energy above the board's idle floor (its power with nothing
  running and every clock left to its kernel governor, measured on a fresh simulated board) over the
  replay, per request. Every policy pays the floor for the whole replay whatever it does, so board
  energy differences shrink with the trace's idle share; active energy is what a policy causes,
  idle clocks it leaves pinned included. The energy targets are judged on it; board energy is
  reported next to it.
* *accuracy delivered*: the mean accuracy of the sub-networks that ran.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from governor.evaluate.replay import PolicyRun

__all__ = ["PolicyMetrics", "TargetCheck", "check_targets", "summarise"]


@dataclass(frozen=True)
class PolicyMetrics:
    policy: str
    summary: str
    requests: int
    served: int
    deadlines_met_pct: float
    feasible_met_pct: float
    floors_met_pct: float
    energy_per_request_mj: float
    run_energy_per_request_mj: float
    idle_energy_per_request_mj: float
    active_energy_per_request_mj: float
    accuracy_pct: float | None
    p50_ms: float
    p99_ms: float
    mean_k: float
    mappings: dict[str, int]
    energy_vs_oracle: float | None = None
    run_energy_vs_oracle: float | None = None
    active_energy_vs_oracle: float | None = None
    simulated: bool = True


def _pct(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 100.0


def _one(run: PolicyRun, summary: str, feasible: Sequence[bool], floor_mw: float) -> PolicyMetrics:
    recs, n = run.records, len(feasible)
    met = {r.index for r in run.records if r.deadline_met}
    latencies = sorted(r.total_ms for r in recs) or [0.0]
    accuracy = [r.accuracy for r in recs if r.accuracy is not None]
    energies = [r.energy_mj for r in recs if r.energy_mj is not None]
    return PolicyMetrics(
        policy=run.policy, summary=summary, requests=n, served=len(recs),
        deadlines_met_pct=_pct(len(met), n),
        feasible_met_pct=_pct(sum(1 for i, f in enumerate(feasible) if f and i in met), sum(feasible)),
        floors_met_pct=_pct(sum(r.floor_met for r in recs), n),
        energy_per_request_mj=run.board_energy_mj / max(n, 1),
        run_energy_per_request_mj=statistics.fmean(energies) if energies else float("nan"),
        idle_energy_per_request_mj=(run.board_energy_mj - sum(energies)) / max(n, 1),
        active_energy_per_request_mj=(run.board_energy_mj - floor_mw * run.duration_s) / max(n, 1),
        accuracy_pct=100.0 * statistics.fmean(accuracy) if accuracy else None,
        p50_ms=latencies[len(latencies) // 2], p99_ms=latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        mean_k=statistics.fmean(r.k for r in recs) if recs else 0.0,
        mappings=dict(Counter(f"{r.unit}/{r.threads}" for r in recs).most_common()))


def summarise(runs: Sequence[PolicyRun], summaries: dict[str, str], feasible: Sequence[bool],
              floor_mw: float = 0.0) -> list[PolicyMetrics]:
    """Metrics per run, with energies relative to the oracle's when the oracle ran; ``floor_mw`` is the
    board's idle floor (see the module doc)."""
    out = [_one(run, summaries.get(run.policy, ""), feasible, floor_mw) for run in runs]
    oracle = next((m for m in out if m.policy == "oracle"), None)
    if oracle is None:
        return out
    return [replace(m, energy_vs_oracle=m.energy_per_request_mj / oracle.energy_per_request_mj,
                    run_energy_vs_oracle=m.run_energy_per_request_mj / oracle.run_energy_per_request_mj,
                    active_energy_vs_oracle=_ratio(m.active_energy_per_request_mj,
                                                   oracle.active_energy_per_request_mj)) for m in out]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _less_or_more(saving_pct: float) -> str:
    """A saving in per cent worded with its sign: 18.1 -> "18.1 % less", -18.1 -> "18.1 % more"."""
    return f"{saving_pct:.1f} % less" if saving_pct >= 0 else f"{-saving_pct:.1f} % more"


@dataclass(frozen=True)
class TargetCheck:
    """One target of the issue: the figure, what it must reach, and whether it did (None: not run)."""

    name: str
    value: str
    target: str
    met: bool | None


def check_targets(metrics: Sequence[PolicyMetrics]) -> list[TargetCheck]:
    by = {m.policy: m for m in metrics}
    ours, oracle, sched = by.get("ours"), by.get("oracle"), by.get("schedutil")
    checks = [TargetCheck("ours: feasible deadlines met", f"{ours.feasible_met_pct:.1f} %" if ours else "-",
                          ">= 99 %", ours.feasible_met_pct >= 99.0 if ours else None)]
    energies = (("active energy", "active_energy_per_request_mj"), ("board energy", "energy_per_request_mj"))
    for label, attr in energies:
        if ours and oracle:
            ratio = getattr(ours, attr) / getattr(oracle, attr)
            value = f"{ratio:.3f}x, deadlines {ours.deadlines_met_pct:.1f} % vs {oracle.deadlines_met_pct:.1f} %"
            checks.append(TargetCheck(f"ours vs oracle, {label}", value, "<= 1.05x", ratio <= 1.05))
        else:
            checks.append(TargetCheck(f"ours vs oracle, {label}", "-", "<= 1.05x", None))
    for label, attr in energies:
        if ours and sched:
            saving = 100.0 * (1.0 - getattr(ours, attr) / getattr(sched, attr))
            ok = saving >= 20.0 and ours.deadlines_met_pct >= sched.deadlines_met_pct
            value = (f"{_less_or_more(saving)}, deadlines {ours.deadlines_met_pct:.1f} % vs "
                     f"{sched.deadlines_met_pct:.1f} %")
            checks.append(TargetCheck(f"ours vs schedutil, {label}", value, ">= 20 % less at >= deadlines met", ok))
        else:
            checks.append(TargetCheck(f"ours vs schedutil, {label}", "-", ">= 20 % less at >= deadlines met", None))
    return checks
