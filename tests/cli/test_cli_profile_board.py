"""`governor profile --board sim:NAME` measures through the drivers and writes a usable profile."""

import csv

import pytest

from governor.cli.main import main
from governor.core.perf.schema import parse_profile


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch

    from governor.runtime.bundled import train_default_model
    from governor.runtime.training import TrainConfig

    path = tmp_path_factory.mktemp("m") / "quick.dgm"
    before = torch.get_num_threads()
    train_default_model(path, TrainConfig(arch="resnet-small", groups=4, epochs=1, width=0.5))
    torch.set_num_threads(before)
    return path


def test_profile_on_a_sim_board_then_predict(tmp_path, model, capsys):
    out = tmp_path / "nano.json"
    code = main(["profile", str(model), "--board", "sim:jetson-nano", "--mappings", "gpu", "--max-points", "16",
                 "--out", str(out), "--quiet"])
    assert code == 0
    doc = parse_profile(out.read_text(), str(out))
    assert doc.provenance.simulated and doc.space.mappings == ("gpu/1",)
    assert 4 <= len(doc.points) <= 16 and all(p.simulated for p in doc.points)
    assert "SIMULATED" in capsys.readouterr().out
    grid = tmp_path / "grid.csv"
    with grid.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["mapping", "groups", "cpu_hz", "gpu_hz", "emc_hz"])
        w.writerow(["gpu/1", 4, 102000000, 921600000, 1600000000])
        w.writerow(["gpu/1", 4, 102000000, 76800000, 1600000000])
    assert main(["predict", "--profile", str(out), "--grid", str(grid), "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert float(rows[0]["latency_ms"]) < float(rows[1]["latency_ms"])  # faster GPU clock, lower latency


def test_profile_board_needs_a_model_file(tmp_path, capsys):
    assert main(["profile", "no-such-model", "--board", "sim:jetson-nano", "--out", str(tmp_path / "x.json")]) == 2
    assert "not a model file" in capsys.readouterr().err


def test_profile_training_is_wired_into_governor_profile(tmp_path):
    import json

    out = tmp_path / "t.json"
    code = main(["profile", "resnet-small:2", "--training", "--batch-sizes", "2", "--training-groups", "1",
                 "--training-repeats", "1", "--training-warmup", "0", "--out", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["passed"]


def test_profiling_a_rail_gated_gpu_holds_it_up_after_the_baseline_and_gives_rail_gating_back(tmp_path, model):
    # governor profile probed a rail-gated GPU as missing and profiled the board without it.
    import argparse

    from governor.cli import profile as cli_profile
    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "nano", variant="railgated")
    railgate = "sys/devices/57000000.gpu/railgate_enable"
    parser = argparse.ArgumentParser()
    cli_profile.register(parser)
    args = parser.parse_args([str(model), "--board", "jetson-nano", "--sysfs-root", str(tree.root), "--quiet"])
    measurement, _space, _info, _meta = cli_profile._open_board(args)
    try:
        assert "gpu" in measurement.target.board.domains and tree.sysfs.read(railgate) == "0"
        saved = {b.owner: dict(b.files) for b in measurement.baselines}
        assert saved["railgate:gpu"] == {railgate: "1\n"} and "devfreq:gpu" in saved
    finally:
        measurement.close()
    assert tree.sysfs.read(railgate) == "1"


def test_profiling_a_board_a_daemon_holds_is_refused_before_anything_is_written(tmp_path, model, capsys):
    # Profiling wrote the clocks of a board a running daemon governed: each took the other's pins for its own.
    from governor.daemon.boardlock import hold_board
    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    tree = make_fake_tree(load_board("jetson-tx2"), tmp_path / "tx2")
    found = tree.snapshot_bytes()
    daemon = hold_board("jetson-tx2", str(tree.root), tmp_path / "state.json")  # what serve holds
    try:
        code = main(["profile", str(model), "--board", "jetson-tx2", "--sysfs-root", str(tree.root),
                     "--out", str(tmp_path / "p.json"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "in use by a running daemon" in err and "systemctl stop governor" in err
        assert tree.snapshot_bytes() == found and not (tmp_path / "p.json").exists()
    finally:
        daemon.release()
    # Once the daemon is gone, profiling takes the lock itself and gives it back at the end.
    import argparse

    from governor.cli import profile as cli_profile

    parser = argparse.ArgumentParser()
    cli_profile.register(parser)
    args = parser.parse_args([str(model), "--board", "jetson-tx2", "--sysfs-root", str(tree.root), "--quiet"])
    measurement = cli_profile._open_board(args)[0]
    with pytest.raises(Exception, match="in use by governor profile"):
        hold_board("jetson-tx2", str(tree.root), tmp_path / "state.json")
    measurement.close()
    hold_board("jetson-tx2", str(tree.root), tmp_path / "state.json").release()


def _profiling(model, tree, state, out):
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-m", "governor", "profile", str(model), "--board", "jetson-nano",
                             "--sysfs-root", str(tree.root), "--state-file", str(state), "--out", str(out),
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _until_pinned(proc, tree, found, state):
    import time

    deadline = time.monotonic() + 60
    while not (state.exists() and tree.snapshot_bytes() != found):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "profiling never wrote a clock"
        time.sleep(0.01)


def test_a_profile_killed_mid_run_leaves_its_baseline_for_governor_restore(tmp_path, model, capsys):
    # `governor profile` kept no state file: killed with -9, it left the clocks pinned and nothing to restore.
    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "nano")
    found, state = tree.snapshot_bytes(), tmp_path / "state" / "baseline.json"
    proc = _profiling(model, tree, state, tmp_path / "p.json")
    try:
        _until_pinned(proc, tree, found, state)
    finally:
        proc.kill()
        proc.wait(10)
    assert state.exists() and tree.snapshot_bytes() != found  # pinned, and the baseline kept
    # profiling again over it is refused: it would save the pinned clocks as the board's baseline
    code = main(["profile", str(model), "--board", "jetson-nano", "--sysfs-root", str(tree.root),
                 "--state-file", str(state), "--out", str(tmp_path / "q.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "governor restore --state-file" in err and not (tmp_path / "q.json").exists()
    assert main(["restore", "--state-file", str(state)]) == 0
    assert "restored the baseline of jetson-nano" in capsys.readouterr().out
    after = tree.snapshot_bytes()
    assert sorted(k for k in set(found) | set(after) if found.get(k) != after.get(k)) == [] and not state.exists()


def test_a_profile_stopped_with_sigterm_puts_the_board_back_itself(tmp_path, model):
    import signal

    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "nano")
    found, state = tree.snapshot_bytes(), tmp_path / "baseline.json"
    proc = _profiling(model, tree, state, tmp_path / "p.json")
    _until_pinned(proc, tree, found, state)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 128 + signal.SIGTERM
    after = tree.snapshot_bytes()
    assert sorted(k for k in set(found) | set(after) if found.get(k) != after.get(k)) == []
    assert not state.exists() and not (tmp_path / "p.json").exists()


def test_an_existing_profile_is_refused_and_the_board_is_left_as_it_was_found(tmp_path, model, capsys):
    # The check for an existing --out came after the board was opened (the GPU's rail-gating held off),
    # outside the restore: the refusal left railgate_enable at 0.
    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "nano")
    found, out, state = tree.snapshot_bytes(), tmp_path / "p.json", tmp_path / "baseline.json"
    out.write_text("{}")
    code = main(["profile", str(model), "--board", "jetson-nano", "--sysfs-root", str(tree.root),
                 "--state-file", str(state), "--out", str(out), "--quiet"])
    assert code == 2 and "exists; pass --force" in capsys.readouterr().err
    assert tree.snapshot_bytes() == found and not state.exists() and out.read_text() == "{}"
