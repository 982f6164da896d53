"""`governor status --explain` (issue 21): where each part was found, its format, what was tried."""

from __future__ import annotations

import json

from governor.cli.main import main
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree


def _explain(root, capsys) -> dict:
    assert main(["status", "--sysfs-root", str(root), "--explain", "--json"]) == 0
    return {p["part"]: p for p in json.loads(capsys.readouterr().out)["parts"]}


def test_explain_names_the_mali_node_found_and_the_candidates(tmp_path, capsys):
    make_fake_tree(load_board("odroid-xu4"), tmp_path / "xu4", variant="devfreq-numbered")
    gpu = _explain(tmp_path / "xu4", capsys)["gpu"]
    assert gpu["found_at"] == "sys/devices/platform/11800000.mali/devfreq/devfreq0"
    assert gpu["format"] == "devfreq, Hz" and gpu["probe"].startswith("success")
    assert "sys/devices/platform/11800000.mali/devfreq/11800000.mali" in gpu["tried"]


def test_explain_lists_what_was_not_found_with_its_reason(tmp_path, capsys):
    tree = make_fake_tree(load_board("odroid-xu3"), tmp_path / "xu3")
    tree.vanish("sys/bus/i2c/drivers/INA231/3-0044")
    parts = _explain(tmp_path / "xu3", capsys)
    assert parts["ina231:3-0044"]["found_at"] == "" and parts["ina231:3-0044"]["probe"].startswith("fail")
    assert parts["gpu-load:gpu"]["format"] == "percent"
    assert parts["gpu-load:gpu"]["found_at"] == "sys/devices/11800000.mali/utilization"
    assert parts["exynos-therm"]["found_at"].startswith("sys/class/thermal/thermal_zone")


def test_explain_text_says_not_found(tmp_path, capsys):
    tree = make_fake_tree(load_board("odroid-xu3"), tmp_path / "xu3")
    tree.vanish("sys/devices/11800000.mali")
    assert main(["status", "--sysfs-root", str(tmp_path / "xu3"), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "gpu (domain/gpu, mali-vendor, MHz): NOT FOUND" in out and "tried sys/devices/11800000.mali" in out
