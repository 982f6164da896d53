"""A whole evaluation: report, JSON and PNG plots written and labelled simulated; the CLI's errors are clear."""

import json
import struct

import pytest

from governor.cli.main import main
from governor.evaluate import EvalConfig, evaluate, generate_trace, load_trace, save_trace


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory, profile_cache):
    trace = save_trace(generate_trace("corunner", requests=24, seed=1), tmp_path_factory.mktemp("t") / "c.json")
    out = tmp_path_factory.mktemp("eval")
    ev = evaluate(EvalConfig(board="sim:jetson-nano", model="alexnet", trace=str(trace), out=out,
                             profile_cache=profile_cache), say=lambda _m: None)
    return ev, out


def test_report_json_and_plots_are_written_and_say_simulated(evaluation):
    ev, out = evaluation
    report = (out / "report.md").read_text()
    assert "(SIMULATED)" in report and "Every figure on this page is simulated" in report
    for m in ev.inputs.metrics:
        assert f"| {m.policy} |" in report
    doc = json.loads((out / "results.json").read_text())
    assert doc["simulated"] is True and all(m["simulated"] for m in doc["metrics"])
    assert {m["policy"] for m in doc["metrics"]} == {"ours", "oracle", "performance", "schedutil", "ondemand",
                                                      "groups-only", "dvfs-only", "best-static"}
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["energy_vs_deadlines.png", *(f"timeline_{m['policy']}.png" for m in doc["metrics"])])
    for name in pngs:
        width, height = _png_size(out / name)
        assert width > 300 and height > 300
        assert f"![{name}]({name})" in report


def test_oracle_is_the_energy_reference_and_targets_are_checked(evaluation):
    ev, _ = evaluation
    by = {m.policy: m for m in ev.inputs.metrics}
    assert by["oracle"].energy_vs_oracle == pytest.approx(1.0)
    assert by["performance"].energy_vs_oracle > 1.0  # top clocks all the time cost more than the oracle's choices
    names = [t.name for t in ev.inputs.targets]
    assert names[0] == "ours: feasible deadlines met" and len(names) == 5
    assert all(t.met is not None for t in ev.inputs.targets)


def test_board_energy_is_runs_plus_idle(evaluation):
    for m in evaluation[0].inputs.metrics:
        assert m.served == m.requests and m.idle_energy_per_request_mj > 0
        assert m.run_energy_per_request_mj + m.idle_energy_per_request_mj == pytest.approx(m.energy_per_request_mj)


def test_dynamic_range_widens_with_dvfs_and_mapping(evaluation):
    dr = evaluation[0].inputs.dynamic_range
    assert dr.simulated and dr.groups_only.simulated
    assert 1.5 < dr.groups_only.time_ratio < 4.0  # k = 1..4 at top clocks: MACs scale ~4x, fixed overheads do not
    assert dr.full.time_ratio > 10 * dr.groups_only.time_ratio
    assert dr.full.energy_ratio > dr.groups_only.energy_ratio


def test_cli_generate_writes_a_loadable_trace(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(["evaluate", "--generate", "bursty", "--requests", "30", "--seed", "4", "--out", str(path)]) == 0
    assert load_trace(path) == generate_trace("bursty", requests=30, seed=4)
    assert "30 requests" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "message"), [
    (["--board", "sim:jetson-nano", "--policy", "ours,fastest"], "unknown policy 'fastest'; choose from ours"),
    (["--board", "sim:no-such-board"], "unknown board 'no-such-board'"),
    (["--board", "jetson-nano"], "simulated boards only; use sim:NAME"),
    (["--board", "sim:jetson-nano", "--trace", "no-such-trace"], "neither a shipped trace (budget-steps, bursty"),
    (["--board", "sim:jetson-nano", "--model", "alexnet:3"], "groups must divide every layer width"),
    (["--board", "sim:jetson-nano", "--model", "missing.dgm"], "is not a file; pass a model file"),
    (["--generate", "zigzag"], "--generate needs --out"),
    (["--generate", "zigzag", "--out", "x.json"], "unknown trace kind 'zigzag'"),
    ([], "--board sim:NAME is required"),
])
def test_cli_bad_input_gets_a_clear_error(tmp_path, capsys, argv, message):
    out = [] if "--out" in argv or "--generate" in argv else ["--out", str(tmp_path / "o")]
    argv = [a if a != "x.json" else str(tmp_path / "x.json") for a in argv]
    model = [] if "--model" in argv or "--generate" in argv else ["--model", "alexnet"]
    assert main(["evaluate", *argv, *model, *out, "--profile", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("governor evaluate: error:")
    assert not (tmp_path / "o").exists() and not (tmp_path / "p.json").exists()


def test_cli_bad_trace_file_names_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "governor-trace", "version": 1, "requests": [[0, -5]]}))
    argv = ["evaluate", "--board", "sim:jetson-nano", "--model", "alexnet", "--trace", str(bad), "--out",
            str(tmp_path / "o")]
    assert main(argv) == 2
    assert "requests[0]: deadline must be positive" in capsys.readouterr().err
