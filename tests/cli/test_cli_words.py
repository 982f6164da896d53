"""Words that say what happened: a comparison says more or less with its sign, out-of-range input is an error."""

import itertools
import re
from pathlib import Path

import pytest

from governor.cli.main import main
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


def _small_table(folder: Path) -> Path:
    """A tiny recorded table: two GPU clocks (114.75 and 1300.5 MHz), two EMC clocks, groups 1-2."""
    rows = ["gpu_hz,emc_hz,groups,latency_ms,power_mw"]
    for g, e, k in itertools.product((114750000, 1300500000), (204000000, 1866000000), (1, 2)):
        latency, power = 0.3 + k * (1.3e9 / g + 0.8e9 / e), 1400 + 500 * g / 1.3005e9 + 400 * e / 1.866e9
        rows.append(f"{g},{e},{k},{latency:.5f},{power:.5f}")
    (folder / "table.csv").write_text("\n".join(rows) + "\n")
    return folder / "table.csv"


@pytest.fixture(scope="module")
def small_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("profile")
    out = folder / "p.json"
    assert main(["profile", "toy-net", "--source", f"replay:{_small_table(folder)}", "--quiet",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("row", "message"), [
    ("9999,204000000,1", r"row 2: gpu at 9999 MHz is outside the board's table \(114\.75-1300\.5 MHz\)"),
    ("50,204000000,1", r"row 2: gpu at 50 MHz is outside the board's table \(114\.75-1300\.5 MHz\)"),
    ("114.75,204000000,3", r"row 2: groups 3 is outside the profiled groups \(1-2\)"),
])
def test_predict_outside_the_boards_table_is_an_error_not_a_warning(
        small_profile: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, message: str) -> None:
    (tmp_path / "grid.csv").write_text(f"gpu_mhz,emc_hz,groups\n500,800000000,1\n{row}\n")
    rc = main(["predict", "--profile", str(small_profile), "--grid", str(tmp_path / "grid.csv"),
               "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()


def test_predict_inside_the_table_still_writes(small_profile: Path, tmp_path: Path) -> None:
    (tmp_path / "grid.csv").write_text("gpu_mhz,emc_hz,groups\n114.75,204000000,1\n1300.5,1866000000,2\n")
    assert main(["predict", "--profile", str(small_profile), "--grid", str(tmp_path / "grid.csv"),
                 "--out", str(tmp_path / "o.csv")]) == 0
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 3


def _percentages(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"(\d+(?:\.\d+)?) ?%", text)]


def test_profile_with_too_few_points_says_so_instead_of_an_absurd_mape(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 3 points: no candidate is pinned; the self-estimate was printed as 100.00 % and 436994378.55 %
    rc = main(["profile", "toy-net", "--source", f"replay:{_small_table(tmp_path)}", "--max-points", "3",
               "--out", str(tmp_path / "p.json")])
    captured = capsys.readouterr()
    assert rc == 0
    final = captured.out.strip().splitlines()[-1]
    assert "estimated MAPE (mean error expected on unmeasured points)" in final
    assert "not enough points to estimate: latency_ms@default, power_mw@default (3 measured" in final
    progress = [line for line in captured.err.splitlines() if "est. MAPE" in line]
    assert progress and all("not enough points to estimate" in line for line in progress)
    assert all(pct < 100 for pct in _percentages(final + "".join(progress))), final


def test_mape_words_for_each_cause() -> None:
    from types import SimpleNamespace

    from governor.cli.estimates import describe_estimates

    models = {("latency_ms", "gpu"): SimpleNamespace(cv_mape=0.03), ("power_mw", "gpu"): SimpleNamespace(cv_mape=1.0),
              ("energy_mj", "gpu"): SimpleNamespace(cv_mape=0.2)}
    text = describe_estimates({"latency_ms@gpu": 3.0, "power_mw@gpu": 6746262.0, "energy_mj@gpu": 480.0},
                              models, measured=5)  # type: ignore[arg-type]
    assert text.startswith("latency_ms@gpu 3.00 %; not enough points to estimate: power_mw@gpu (5 measured")
    assert "no estimate yet for energy_mj@gpu (at some unmeasured points its models disagree" in text
    assert "6746262" not in text and "480" not in text
    assert describe_estimates({}, {}, measured=0) == "none"


@pytest.mark.parametrize(("layout", "message"), [
    (None, r"no such directory; give a profiles directory, one that holds boards/<name>\.toml"),
    ("empty", r"holds no board descriptions, boards/<name>\.toml$"),
    ("boards-only", r"holds no board descriptions, boards/<name>\.toml \(it holds board files itself: give its parent"),
])
def test_boards_with_a_profiles_dir_without_boards_is_an_error_not_the_bundled_catalogue(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str | None, message: str) -> None:
    from governor.drivers.catalogue import profiles_dir

    directory = tmp_path / "profiles"
    if layout is not None:
        (directory / "boards").mkdir(parents=True)
    if layout == "boards-only":  # the boards/ folder itself given
        directory = directory / "boards"
        (directory / "jetson-nano.toml").write_text((profiles_dir() / "boards" / "jetson-nano.toml").read_text())
    assert main(["boards", "--profiles", str(directory)]) == 2
    captured = capsys.readouterr()
    assert "BOARD" not in captured.out
    assert len(captured.err.strip().splitlines()) == 1 and str(directory) in captured.err
    assert re.search(message, captured.err.strip()), captured.err


def test_boards_lists_the_given_directory_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from governor.drivers.catalogue import profiles_dir

    (tmp_path / "boards").mkdir()
    (tmp_path / "boards" / "jetson-nano.toml").write_text((profiles_dir() / "boards" / "jetson-nano.toml").read_text())
    assert main(["boards", "--profiles", str(tmp_path)]) == 0
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert [row.split()[0] for row in table[1:]] == ["jetson-nano"]


def test_a_governor_profiles_variable_naming_nothing_is_an_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GOVERNOR_PROFILES", str(tmp_path / "nope"))
    assert main(["boards"]) == 2
    assert "$GOVERNOR_PROFILES): no such directory" in capsys.readouterr().err
