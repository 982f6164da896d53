"""The profile `governor profile` makes reaches `governor serve`: one default place, and `serve --profile P`."""

import json
import tempfile
from pathlib import Path

import pytest

from governor.cli.main import main
from governor.daemon.app import _profile_path, build_app
from governor.daemon.config import load_config
from governor.daemon.target import open_target

BOARD = "sim:jetson-nano"
SMALL = ["--mappings", "gpu", "--max-points", "10", "--quiet"]  # 8 corners (gpu, emc, k) and 2 more


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch

    from governor.runtime.bundled import train_default_model
    from governor.runtime.training import TrainConfig

    path = tmp_path_factory.mktemp("m") / "quick.dgm"
    before = torch.get_num_threads()
    try:
        train_default_model(path, TrainConfig(arch="resnet-small", groups=2, epochs=1, width=0.5))
    finally:
        torch.set_num_threads(before)
    return path


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))  # what systemd's StateDirectory= sets
    return state


@pytest.fixture(scope="module")
def profile(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("p") / "nano-gpu.json"
    assert main(["profile", str(model), "--board", BOARD, *SMALL, "--out", str(out)]) == 0
    return out


def _config(model, run_dir, **daemon):
    return load_config(None).with_overrides(board=BOARD, model=str(model), endpoint=f"ipc://{run_dir}/g.sock",
                                            telemetry_endpoint=f"ipc://{run_dir}/t.sock",
                                            state_file=str(run_dir / "baseline.json"), **daemon)


@pytest.fixture
def run_dir():
    with tempfile.TemporaryDirectory(prefix="gpl-", dir="/tmp") as d:  # ipc paths must stay short
        yield Path(d)


def test_profile_writes_where_serve_looks_and_says_how_serve_loads_it(model, state_dir, run_dir, capsys):
    assert main(["profile", str(model), "--board", BOARD, *SMALL]) == 0
    target = open_target(BOARD, clock="virtual")
    try:
        looked_up = _profile_path(_config(model, run_dir), target, model)
    finally:
        target.close()
    assert looked_up == state_dir / "profiles" / "quick" / "sim-jetson-nano.json"
    assert looked_up.is_file()
    out = capsys.readouterr().out
    assert f"wrote {looked_up} (SIMULATED measurements); `governor serve --model {model} --board {BOARD}` " \
           "will load it" in out


def test_profile_with_out_elsewhere_names_the_serve_profile_flag(model, profile, state_dir, capsys):
    out = profile.with_name("again.json")
    assert main(["profile", str(model), "--board", BOARD, *SMALL, "--out", str(out)]) == 0
    assert f"`governor serve --model {model} --board {BOARD} --profile {out}` will load it" in capsys.readouterr().out
    assert not (state_dir / "profiles").exists()


def test_serve_profile_flag_reaches_the_config():
    args = ["serve", "--board", BOARD, "--profile", "/some/p.json", "--dump-config"]
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(args) == 0
    assert json.loads(buffer.getvalue())["daemon"]["profile"] == "/some/p.json"


def test_serve_loads_the_given_profile_and_serves_its_mappings(model, profile, state_dir, run_dir):
    said: list[str] = []
    app = build_app(_config(model, run_dir, profile=str(profile)), say=said.append)
    try:
        assert f"loaded profile {profile}" in said
        assert not any(line.startswith("profiling") for line in said)  # nothing measured again
        assert {p.unit for p in app.daemon.parts.table.table.points} == {"gpu"}  # the profile's one mapping
    finally:
        app.shutdown()
    assert not (state_dir / "profiles").exists()  # the given profile is never copied or re-saved


@pytest.mark.parametrize("field, value, words", [
    ("model", "another-net", "is a profile of model 'another-net' on board sim-jetson-nano, but this daemon "
                             "serves model 'quick' on board sim-jetson-nano"),
    ("board", "sim-jetson-tx2", "is a profile of model 'quick' on board sim-jetson-tx2"),
])
def test_serve_refuses_a_profile_of_another_model_or_board(model, profile, run_dir, tmp_path, capsys, field, value,
                                                           words):
    doc = json.loads(profile.read_text())
    if field == "model":
        doc["model"] = value
    else:
        doc["provenance"]["board"] = value
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    code = main(["serve", "--board", BOARD, "--model", str(model), "--profile", str(other),
                 "--endpoint", f"ipc://{run_dir}/g.sock", "--state-file", str(run_dir / "baseline.json")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err


def test_serve_refuses_a_missing_profile_instead_of_measuring(model, run_dir, tmp_path, capsys):
    missing = tmp_path / "typo.json"
    code = main(["serve", "--board", BOARD, "--model", str(model), "--profile", str(missing),
                 "--endpoint", f"ipc://{run_dir}/g.sock", "--state-file", str(run_dir / "baseline.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"{missing}: no such profile" in err and f"--out {missing}" in err
    assert not missing.exists()


def test_a_host_profile_does_not_promise_what_serve_refuses(model, tmp_path, capsys):
    # serve on a host without DVFS (no cpufreq, as in a VM) measures its own table and refuses --profile;
    # the hint said it would load it
    (tmp_path / "root").mkdir()
    out = tmp_path / "host.json"
    assert main(["profile", str(model), "--board", "host", "--sysfs-root", str(tmp_path / "root"), "--max-points",
                 "4", "--quiet", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert out.is_file() and "will load it" not in said and "does not load a profile" in said
