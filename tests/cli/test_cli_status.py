"""`governor status` and `governor boards` as a user runs them: fake trees, sim boards, bad input."""

import json
import subprocess
import sys

import pytest

from governor.cli.main import main
from governor.drivers.catalogue import board_names, load_board
from governor.testing import make_fake_tree


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "governor", *args], capture_output=True, text=True,
                          timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_status_of_a_fake_tx2_tree_shows_domains_and_rails(tmp_path, capsys):
    make_fake_tree(load_board("jetson-tx2"), tmp_path)
    assert main(["status", "--board", "jetson-tx2", "--sysfs-root", str(tmp_path), "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    for name in ("cpu-a57", "cpu-denver", "gpu", "emc", "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR", "BCPU-therm"):
        assert name in out
    assert "2035.2" in out and "SIMULATED" not in out


@pytest.mark.parametrize("board", board_names())
def test_status_json_detects_every_fake_board(tmp_path, capsys, board):
    spec = load_board(board)
    make_fake_tree(spec, tmp_path)
    assert main(["status", "--sysfs-root", str(tmp_path), "--json", "--interval", "0.01"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["board"] == board and data["simulated"] is False
    declared = {d.name for d in spec.domains}
    assert declared <= set(data["domains"])
    for d in data["domains"].values():
        assert d["min_hz"] <= d["cur_hz"] <= d["max_hz"]
        assert d["available_hz"] == sorted(d["available_hz"])
    if spec.power_total:
        assert data["total_power_mw"] is not None and data["total_power_mw"] > 0


def test_sim_status_is_labelled_and_changes(capsys):
    assert main(["status", "--board", "sim:jetson-nano", "--json", "--watch", "--count", "2",
                 "--interval", "0.3"]) == 0
    first, second = (json.loads(chunk) for chunk in capsys.readouterr().out.replace("}\n{", "}\n\x00{").split("\x00"))
    assert first["simulated"] and second["simulated"]
    assert second["t"] > first["t"]
    assert first["power_mw"] != second["power_mw"] or first["temps_c"] != second["temps_c"]


def test_unknown_board_and_missing_root_say_what_to_do(tmp_path):
    code, _, err = run_cli("status", "--board", "jetson-tx3")
    assert code == 2 and "known boards" in err and "jetson-tx2" in err
    code, _, err = run_cli("status", "--sysfs-root", str(tmp_path / "nope"))
    assert code == 2 and "not a directory" in err


def test_board_that_does_not_match_the_tree_is_refused(tmp_path):
    make_fake_tree(load_board("odroid-xu4"), tmp_path)
    code, _, err = run_cli("status", "--board", "jetson-nano", "--sysfs-root", str(tmp_path))
    assert code == 2 and "odroid-xu4" in err


def test_boards_lists_the_catalogue(capsys):
    assert main(["boards", "--json"]) == 0
    names = [b["board"]["name"] for b in json.loads(capsys.readouterr().out)]
    assert names == board_names() and len(names) == 8


def test_subcommand_help_lists_its_own_flags(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["status", "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "--sysfs-root" in out and "--board" in out


def test_demo_against_a_missing_daemon_says_how_to_start_one(tmp_path):
    code, _, err = run_cli("demo", "--endpoint", f"ipc://{tmp_path}/none.sock", "--requests", "1")
    assert code == 2 and "governor serve" in err


def test_status_of_a_rail_gated_gpu_writes_nothing_and_says_what_serve_will_do(tmp_path, capsys):
    # A probe that powered the GPU up (railgate_enable = 0) left rail-gating off for good after a status.
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path, variant="railgated")
    found = tree.snapshot_bytes()
    assert main(["status", "--board", "jetson-nano", "--sysfs-root", str(tmp_path), "--explain"]) == 0
    out = capsys.readouterr().out
    assert tree.snapshot_bytes() == found
    assert "rail-gated" in out and "railgate_enable = 0" in out
