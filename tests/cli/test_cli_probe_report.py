"""`governor probe-report` as a user runs it: fake trees of several boards, the file it writes, a rebuilt
tree that `governor status` reads as it reads the original, and bad input as one line and exit 2."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from governor.cli.main import main
from governor.cli.probe_report import default_name
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree, tree_from_probe_report

# A file of each kind the drivers read, per board: cpufreq, devfreq (or the vendor Mali), thermal, rails.
EXPECTED = {
    "jetson-nano": [
        ("sys/devices/system/cpu/cpufreq/policy0/scaling_available_frequencies", "102000 204000"),
        ("sys/devices/57000000.gpu/devfreq/57000000.gpu/available_frequencies", "76800000 153600000"),
        ("sys/kernel/debug/clk/override.emc/clk_rate", "204000000"),
        ("sys/devices/virtual/thermal/thermal_zone2/type", "GPU-therm"),
        ("sys/devices/546c0000.i2c/i2c-6/6-0040/iio:device0/rail_name_0", "POM_5V_IN"),
    ],
    "jetson-agx-orin": [
        ("sys/devices/system/cpu/cpufreq/policy4/scaling_driver", "tegra194"),
        ("sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu/cur_freq", ""),
        ("sys/kernel/debug/bpmp/debug/clk/emc/mrq_rate_locked", ""),
        ("sys/devices/virtual/thermal/thermal_zone0/type", ""),
        ("sys/devices/platform/bus@0/c240000.i2c/i2c-1/1-0040/hwmon/hwmon0/in1_label", "VDD_GPU_SOC"),
    ],
    "odroid-xu3": [
        ("sys/devices/system/cpu/cpu4/cpufreq/scaling_available_frequencies", ""),
        ("sys/devices/11800000.mali/clock", ""),
        ("sys/devices/virtual/thermal/thermal_zone0/temp", ""),
        ("sys/devices/12c90000.i2c/i2c-3/3-0040/sensor_W", ""),
    ],
}


def _report(tmp_path, board: str, *extra: str) -> tuple[dict, object]:
    tree = make_fake_tree(load_board(board), tmp_path / board)
    out = tmp_path / f"{board}.json"
    assert main(["probe-report", "--sysfs-root", str(tree.root), "--out", str(out), *extra]) == 0
    return json.loads(out.read_text()), tree


@pytest.mark.parametrize("board", sorted(EXPECTED))
def test_the_report_holds_each_part_with_its_value(tmp_path, capsys, board):
    report, _ = _report(tmp_path, board)
    said = capsys.readouterr().out
    assert f"written to {tmp_path / board}.json" in said and "present (" in said
    assert report["format"] == "governor-probe-report" and report["version"] == 1
    assert set(report["host"]) == {"kernel", "machine"} and report["created_utc"].endswith("Z")
    entries = {e["path"]: e for e in report["entries"]}
    for path, start in EXPECTED[board]:
        assert path in entries, path
        assert entries[path]["value"].startswith(start) and entries[path]["value"].strip(), entries[path]
    assert {"path": "sys/class/devfreq", "present": board != "odroid-xu3"} in report["roots"]


@pytest.mark.parametrize("board", ["jetson-nano", "jetson-agx-orin", "odroid-xu3"])
def test_status_reads_a_rebuilt_tree_as_the_original(tmp_path, capsys, board):
    report, tree = _report(tmp_path, board)
    rebuilt = tree_from_probe_report(report, tmp_path / "rebuilt", spec=load_board(board))
    shown = []
    for root in (tree.root, rebuilt.root):
        capsys.readouterr()
        assert main(["status", "--board", board, "--sysfs-root", str(root), "--json", "--interval", "0.01"]) == 0
        shown.append(json.loads(capsys.readouterr().out))
    original, again = shown
    assert again["domains"] == original["domains"] and again["domains"]
    assert again["temps_c"] == original["temps_c"]
    assert sorted(again["power_mw"]) == sorted(original["power_mw"])  # INA231s read 0 until enabled: names


def test_stdout_gets_the_report_and_stderr_the_summary(tmp_path, capsys):
    tree = make_fake_tree(load_board("jetson-tx2"), tmp_path / "root")
    assert main(["probe-report", "--sysfs-root", str(tree.root), "--out", "-", "--max-bytes", "8"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["limits"]["max_bytes"] == 8
    assert all(len(e["value"].encode()) <= 8 for e in report["entries"] if "value" in e and "base64" not in e)
    assert "written to stdout" in captured.err and "entries" in captured.err


def test_the_default_file_is_named_after_the_host_and_the_utc_date(tmp_path, monkeypatch, capsys):
    tree = make_fake_tree(load_board("host"), tmp_path / "root")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["probe-report", "--sysfs-root", str(tree.root)]) == 0
    (written,) = work.iterdir()
    assert written.name.startswith("governor-probe-report-") and written.suffix == ".json"
    assert json.loads(written.read_text())["format"] == "governor-probe-report"
    elsewhere = tmp_path / "reports"
    elsewhere.mkdir()
    assert main(["probe-report", "--sysfs-root", str(tree.root), "--out", str(elsewhere)]) == 0
    assert [p.name for p in elsewhere.iterdir()] == [written.name]  # a directory gets the default name
    day = datetime(2026, 3, 1, 23, 59, tzinfo=timezone.utc)
    assert default_name(day).endswith("-2026-03-01.json")


@pytest.mark.parametrize(("args", "words"), [
    (["--sysfs-root", "/nonexistent/governor-test"], "is not a directory"),
    (["--max-bytes", "0"], "--max-bytes must be between 1"),
    (["--max-bytes", "-3"], "--max-bytes must be between 1"),
    (["--out", "/nonexistent/governor-test/r.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    tree = make_fake_tree(load_board("host"), tmp_path / "root")
    code = main(["probe-report", "--sysfs-root", str(tree.root), *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("governor probe-report: error: ") and words in err
