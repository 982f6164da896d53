"""`governor profile` and `governor predict` end to end on small tables."""

from __future__ import annotations

import csv
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest

from governor.cli.main import main

CPU_KHZ = (345600, 1113600, 2035200)
GPU_HZ = (114750000, 522750000, 930750000, 1300500000)
EMC_HZ = (204000000, 800000000, 1866000000)


def _truth(c: float, g: float, e: float, k: int) -> tuple[float, float]:
    latency = 0.3 + 1e8 / c + k * (1.3e9 / g + 0.8e9 / e)
    power = 1400 + 800 * (c / 2.0352e9) ** 3 + 500 * (g / 1.3005e9) ** 3 + 400 * e / 1.866e9
    return latency, power


def _write_table(path: Path, simulated: bool = False) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cpu_khz", "gpu_hz", "emc_hz", "groups", "latency_ms", "power_mw", "simulated"])
        for c, g, e, k in itertools.product(CPU_KHZ, GPU_HZ, EMC_HZ, (1, 2, 3, 4)):
            w.writerow([c, g, e, k, *(f"{v:.5f}" for v in _truth(c * 1e3, g, e, k)), simulated])


def _profile(tmp_path: Path, *extra: str, simulated: bool = False, points: int = 40) -> tuple[int, Path]:
    table = tmp_path / "table.csv"
    _write_table(table, simulated)
    out = tmp_path / "p.json"
    rc = main(["profile", "toy-net", "--source", f"replay:{table}", "--max-points", str(points), "--quiet",
               "--out", str(out), *extra])
    return rc, out


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rc, out = _profile(tmp_path_factory.mktemp("profiled"), "--jetpack", "4.6.4", "--board", "jetson-tx2")
    assert rc == 0
    return out


def test_profile_then_predict_end_to_end(profiled: Path, tmp_path: Path) -> None:
    out = profiled
    doc = json.loads(out.read_text())
    assert doc["model"] == "toy-net" and doc["provenance"]["board"] == "jetson-tx2"
    assert doc["provenance"]["jetpack"] == "4.6.4" and doc["provenance"]["simulated"] is False
    assert 8 < len(doc["points"]) <= 40
    grid = tmp_path / "grid.csv"
    grid.write_text("emc_hz,gpu_mhz,cpu_khz,groups,note\n1866000000,522.75,1113600,3,columns in any order\n"
                    "204000000,114.75,345600,1,a table corner\n")
    pred = tmp_path / "out.csv"
    assert main(["predict", "--profile", str(out), "--grid", str(grid), "--out", str(pred)]) == 0
    rows = list(csv.DictReader(pred.open()))
    assert list(rows[0])[:5] == ["emc_hz", "gpu_mhz", "cpu_khz", "groups", "note"]
    assert rows[0]["note"] == "columns in any order" and rows[1]["simulated"] == "false"
    for row, point in zip(rows, [(1113.6e6, 522.75e6, 1.866e9, 3), (345.6e6, 114.75e6, 204e6, 1)], strict=True):
        latency, power = _truth(*point)
        assert float(row["latency_ms"]) == pytest.approx(latency, rel=0.02)
        assert float(row["power_mw"]) == pytest.approx(power, rel=0.03)
        assert float(row["energy_mj"]) == pytest.approx(latency * power / 1000, rel=0.04)
        assert all(float(row[f"{t}_std"]) > 0 for t in ("latency_ms", "power_mw", "energy_mj"))


def test_simulated_tables_make_simulated_profiles_and_predictions(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = _profile(tmp_path, simulated=True, points=12)
    assert rc == 0 and "SIMULATED" in capsys.readouterr().out
    assert json.loads(out.read_text())["provenance"]["simulated"] is True
    grid = tmp_path / "grid.csv"
    grid.write_text("cpu_khz,gpu_hz,emc_hz,groups\n345600,114750000,204000000,2\n")
    pred = tmp_path / "out.csv"
    assert main(["predict", "--profile", str(out), "--grid", str(grid), "--out", str(pred)]) == 0
    assert next(csv.DictReader(pred.open()))["simulated"] == "true"


def test_board_measurement_needs_a_model_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "toy-net", "--board", "jetson-tx2", "--out", "/nonexistent/p.json"]) == 2
    assert "not a model file" in capsys.readouterr().err


def test_existing_outputs_are_not_overwritten_without_force(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.json").write_text("keep me")
    rc, out = _profile(tmp_path)
    assert rc == 2 and "pass --force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    assert _profile(tmp_path, "--force", points=12)[0] == 0


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("cpu_khz,gpu_hz,groups\n345600,114750000,1\n", r"missing \['emc'\]"),
        ("cpu_khz,gpu_hz,emc_hz\n345600,114750000,204000000\n", "add a groups column"),
        ("cpu_khz,gpu_hz,emc_hz,groups,mapping\n345600,114750000,204000000,1,npu\n", r"\['npu'\] are not in"),
        ("cpu_khz,gpu_hz,emc_hz,groups,latency_ms\n345600,114750000,204000000,1,3\n", "already has column"),
    ],
)
def test_predict_refuses_grids_it_cannot_answer(profiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                grid: str, message: str) -> None:
    (tmp_path / "grid.csv").write_text(grid)
    rc = main(["predict", "--profile", str(profiled), "--grid", str(tmp_path / "grid.csv"),
               "--out", str(tmp_path / "o.csv")])
    assert rc == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "o.csv").exists()


def test_a_corrupt_profile_is_named_and_nothing_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p.json").write_text('{"format": "dnn-governor-profile", "schema_')
    (tmp_path / "grid.csv").write_text("gpu_hz\n100\n")
    rc = main(["predict", "--profile", str(tmp_path / "p.json"), "--grid", str(tmp_path / "grid.csv"),
               "--out", str(tmp_path / "o.csv")])
    assert rc == 2 and "not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--source", "tape:x.csv"], "unknown source"),
    ([], "say where to measure"),
    (["--source", "replay:/nonexistent/t.csv"], "cannot read"),
])
def test_profile_source_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "toy-net", *args, "--out", "/nonexistent/p.json"]) == 2
    assert message in capsys.readouterr().err


def test_predictions_match_the_profile_api(profiled: Path) -> None:
    from governor.cli.predict import load_profile

    model = load_profile(str(profiled))
    grid = np.array([[345.6e6, 114.75e6, 204e6, 2.0]])
    assert model.predict("latency_ms", "default", grid)[0][0] == pytest.approx(_truth(*grid[0])[0], rel=0.02)


def test_steering_by_a_quantity_the_table_lacks_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = _profile(tmp_path, "--targets", "energy_mj")
    assert rc == 2 and "has no such column" in capsys.readouterr().err


def test_interrupted_profile_resumes_from_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from governor.drivers.replay import ReplaySource

    real = ReplaySource.measure
    calls = {"n": 0}

    def flaky(self: ReplaySource, point: object) -> object:
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return real(self, point)

    monkeypatch.setattr(ReplaySource, "measure", flaky)
    rc, _ = _profile(tmp_path, "--target-mape", "0.001", points=30)
    assert rc == 130  # Ctrl-C: interrupted, checkpoint kept
    partial = tmp_path / "p.json.partial.json"
    assert partial.exists() and not (tmp_path / "p.json").exists()
    saved = len(json.loads(partial.read_text())["measured"])
    assert 0 < saved < 15
    calls["n"] = -10_000  # no more interruptions
    rc, out = _profile(tmp_path, "--target-mape", "0.001", points=30)
    assert rc == 0 and out.exists() and not partial.exists()
    doc = json.loads(out.read_text())
    assert len(doc["points"]) <= 30
    assert calls["n"] - (-10_000) <= 30 - saved  # the resumed run measured only what was missing
