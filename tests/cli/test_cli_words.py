"""Words that say what happened: a comparison says more or less with its sign, out-of-range input is an error."""

from governor.evaluate.metrics import PolicyMetrics, check_targets
from governor.evaluate.report import ReportInputs, render_markdown


def _metrics(policy: str, active_mj: float, board_mj: float) -> PolicyMetrics:
    return PolicyMetrics(policy=policy, summary="", requests=10, served=10, deadlines_met_pct=100.0,
                         feasible_met_pct=100.0, floors_met_pct=100.0, energy_per_request_mj=board_mj,
                         run_energy_per_request_mj=board_mj / 2, idle_energy_per_request_mj=board_mj / 2,
                         active_energy_per_request_mj=active_mj, accuracy_pct=None, p50_ms=1.0, p99_ms=2.0,
                         mean_k=4.0, mappings={"cpu": 10})


def _vs_schedutil(ours_active: float, ours_board: float) -> dict[str, str]:
    metrics = [_metrics("ours", ours_active, ours_board), _metrics("oracle", 10.0, 100.0),
               _metrics("schedutil", 10.0, 100.0)]
    return {c.name: c.value for c in check_targets(metrics) if "schedutil" in c.name}


def test_spending_more_than_schedutil_is_worded_more_not_negative_less():
    values = _vs_schedutil(ours_active=11.81, ours_board=90.0)
    assert values["ours vs schedutil, active energy"].startswith("18.1 % more,")
    assert values["ours vs schedutil, board energy"].startswith("10.0 % less,")
    assert not any("-" in v.split(",")[0] for v in values.values())


def test_the_markdown_report_words_the_comparison_the_same_way():
    metrics = [_metrics("ours", 11.81, 90.0), _metrics("oracle", 10.0, 100.0), _metrics("schedutil", 10.0, 100.0)]
    inputs = ReportInputs(board="sim:x", model="m", accuracy_source="-", trace="t", trace_description="d",
                          requests=10, feasible=10, ref_ms=1.0, duration_s=1.0, baseline_mapping="cpu",
                          profile_points=4, tick_hz=10.0, seed=0, metrics=metrics,
                          targets=check_targets(metrics), dynamic_range=None, figures=())
    page = render_markdown(inputs)
    assert "| ours vs schedutil, active energy | 18.1 % more, deadlines" in page
    assert "% less" in page and "-18.1" not in page
