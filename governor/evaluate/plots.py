"""PNG figures of an evaluation: energy against deadlines met, and per-policy timelines. All simulated.

matplotlib is an optional dependency (``pip install dnn-governor[eval]``); it is imported only here,
with the non-interactive Agg backend, so evaluation works headless and a missing library costs
the figures, never the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from governor.evaluate.metrics import PolicyMetrics
from governor.evaluate.replay import PolicyRun
from governor.evaluate.traces import ResolvedTrace

__all__ = ["PlotsUnavailable", "plot_energy_vs_deadlines", "plot_timeline"]


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed; the message says how to get it."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable("matplotlib is not installed: pip install 'dnn-governor[eval]' for the PNG plots") \
            from exc
    return plt


def plot_energy_vs_deadlines(metrics: Sequence[PolicyMetrics], path: Path, title: str) -> Path:
    """Active energy per request (filled: above the idle floor) and board energy (hollow) against deadlines met."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.0), dpi=110)
    names: dict[tuple[float, float], list[str]] = {}
    for i, m in enumerate(metrics):
        colour = f"C{i % 10}"
        ax.scatter(m.deadlines_met_pct, m.active_energy_per_request_mj, s=70, color=colour, label=m.policy, zorder=3)
        ax.scatter(m.deadlines_met_pct, m.energy_per_request_mj, s=70, facecolors="none", edgecolors=colour,
                   zorder=3)
        names.setdefault((round(m.deadlines_met_pct, 1), round(m.active_energy_per_request_mj, 2)),
                         []).append(m.policy)
    for (x, y), policies in names.items():  # policies that land on one point share one label
        ax.annotate(", ".join(policies), (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel("deadlines met (% of requests)")
    ax.set_ylabel("energy per request (mJ): filled = above idle floor, hollow = board incl. idle")
    ax.set_title(f"SIMULATED - {title}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, plt, path)


def plot_timeline(run: PolicyRun, trace: ResolvedTrace, path: Path, title: str, groups: int) -> Path:
    """Three panels over trace time: k per request (missed in red), clocks relative to top, board power."""
    plt = _pyplot()
    fig, (ax_k, ax_f, ax_p) = plt.subplots(3, 1, figsize=(9.0, 7.0), dpi=110, sharex=True)
    ok = [r for r in run.records if r.deadline_met]
    missed = [r for r in run.records if not r.deadline_met]
    ax_k.scatter([r.finish_s for r in ok], [r.k for r in ok], s=6, color="C0", label="deadline met")
    ax_k.scatter([r.finish_s for r in missed], [r.k for r in missed], s=10, color="C3", marker="x", label="missed")
    ax_k.set_ylabel("groups k")
    ax_k.set_ylim(0.5, groups + 0.5)
    ax_k.set_yticks(range(1, groups + 1))
    ax_k.legend(fontsize=7, loc="lower right")
    domains = sorted({d for tick in run.ticks for d in tick.clocks_hz})
    for d in domains:
        values = [(t.t_s, t.clocks_hz[d]) for t in run.ticks if d in t.clocks_hz]
        ax_f.step([t for t, _ in values], [v / 1e6 for _, v in values], where="post", label=d)
    ax_f.set_ylabel("clock (MHz)")
    ax_f.legend(fontsize=7, loc="upper right")
    powered = [(t.t_s, t.power_mw / 1000.0) for t in run.ticks if t.power_mw is not None]
    ax_p.plot([t for t, _ in powered], [w for _, w in powered], color="C2", lw=0.8)
    ax_p.set_ylabel("board power (W)")
    ax_p.set_xlabel("time (s, simulated)")
    for phase in trace.scenario.phases:
        if phase.corunners:
            for ax in (ax_k, ax_f, ax_p):
                ax.axvspan(phase.start_s, min(phase.end_s, trace.end_s), color="0.85", zorder=0)
    fig.suptitle(f"SIMULATED - {title} (grey: co-runner active)", fontsize=10)
    return _save(fig, plt, path)


def _save(fig: Any, plt: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
