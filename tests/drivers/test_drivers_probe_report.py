"""The probe report's walk: it holds every file the drivers read, records refused reads by errno name,
follows links only as governor.drivers.probe_roots says, never writes and stays within its bounds."""

from __future__ import annotations

import errno
import fnmatch
import os

import pytest

from governor.drivers._sysfs import SysfsRoot
from governor.drivers.board import open_board
from governor.drivers.catalogue import board_names, load_board
from governor.drivers.probe_report import FORMAT, build_probe_report
from governor.drivers.probe_roots import PROBE_ROOTS
from governor.testing import make_fake_tree

BOARDS = board_names()


def _entries(report: dict) -> dict[str, dict]:
    return {e["path"]: e for e in report["entries"]}


@pytest.mark.parametrize("board", BOARDS)
def test_every_path_the_catalogue_names_lies_in_a_root(board):
    spec = load_board(board)
    named = [p for d in spec.domains for p in (*d.paths, d.load_path) if p] + [d.path for d in spec.power]
    for path in named:
        assert any(fnmatch.fnmatchcase(path, r) or fnmatch.fnmatchcase(path, f"{r}/*") for r in PROBE_ROOTS), path


@pytest.mark.parametrize("board", BOARDS)
def test_the_report_holds_every_file_the_drivers_read(tmp_path, monkeypatch, board):
    tree = make_fake_tree(load_board(board), tmp_path / "root", seed=4)
    read: set[str] = set()
    original = type(tree.sysfs).read_bytes

    def recording(self, rel):
        read.add(self.canonical(rel))
        return original(self, rel)

    monkeypatch.setattr(type(tree.sysfs), "read_bytes", recording)
    board_ = open_board(tree.spec, tree.sysfs, clock=iter(range(1000)).__next__)
    board_.sample()
    board_.close()
    monkeypatch.undo()
    entries = _entries(build_probe_report(tree.sysfs))
    assert read - {"proc/stat"}, "the drivers read nothing?"
    assert sorted(read - {"proc/stat"} - set(entries)) == []  # /proc/stat is deliberately not reported


def test_values_modes_and_kinds_are_recorded(tmp_path):
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "root")
    report = build_probe_report(tree.sysfs)
    assert report["format"] == FORMAT and report["version"] == 1 and report["truncated"] is False
    entries = _entries(report)
    policy = "sys/devices/system/cpu/cpufreq/policy0"
    assert entries[f"{policy}/scaling_driver"] == {"path": f"{policy}/scaling_driver", "kind": "file", "mode": "0444",
                                                   "size": len("tegra_cpufreq\n"), "value": "tegra_cpufreq\n",
                                                   "truncated": False}
    assert entries[f"{policy}/cpuinfo_cur_freq"]["mode"] == "0400"
    assert entries[f"{policy}/scaling_max_freq"]["mode"] == "0644"
    assert entries["sys/class/devfreq/57000000.gpu"]["kind"] == "link"
    assert entries["proc/device-tree"] == {"path": "proc/device-tree", "kind": "link", "mode": "0777",
                                           "target": "../sys/firmware/devicetree/base", "followed": True}
    assert entries["sys/firmware/devicetree/base/gpu@57000000/name"]["value"] == "gpu\x00"  # of_node, followed
    assert entries[policy]["kind"] == "dir" and entries[policy]["listed"] is True
    assert {r["path"]: r["present"] for r in report["roots"]}["sys/kernel/debug/bpmp/debug/clk/emc"] is False


def test_refused_reads_are_recorded_by_errno_name(tmp_path, monkeypatch):
    tree = make_fake_tree(load_board("jetson-agx-orin"), tmp_path / "root")
    zone = "sys/devices/virtual/thermal/thermal_zone0/type"
    tree.deny(zone, reads=True)
    real_open = os.open
    policy_max = str(tree.path("sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"))

    def refusing_open(path, flags, *args, **kwargs):
        if os.fspath(path) == policy_max:
            raise PermissionError(errno.EPERM, "Operation not permitted", path)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    entries = _entries(build_probe_report(tree.sysfs))
    monkeypatch.undo()
    assert entries[zone]["error"] == "EACCES" and "value" not in entries[zone]
    assert entries["sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"]["error"] == "EPERM"
    offline = [e for e in entries.values() if e.get("error") == "EAGAIN"]  # the fake R36 kernel's own refusal
    disabled = sum(z.disabled for z in tree.spec.thermal)
    assert disabled and len(offline) == disabled and all(e["path"].endswith("/temp") for e in offline)


def test_the_walk_never_writes(tmp_path, monkeypatch):
    tree = make_fake_tree(load_board("odroid-xu3"), tmp_path / "root")
    before = tree.snapshot_bytes()
    monkeypatch.setattr(type(tree.sysfs), "_write_raw", lambda *a: pytest.fail("the report wrote"))
    build_probe_report(tree.sysfs)
    assert tree.snapshot_bytes() == before


def _plain(tmp_path, files: dict[str, bytes], links: dict[str, str]) -> SysfsRoot:
    root = tmp_path / "plain"
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    for rel, target in links.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / rel)
    return SysfsRoot(root)


def test_links_are_followed_only_into_devices_and_never_out_of_the_root(tmp_path, monkeypatch):
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret").write_text("never read\n")
    sysfs = _plain(tmp_path, {"sys/devices/chip/temp": b"40000\n", "sys/devices/other/name": b"x\n",
                              "sys/devices/chip/power/control": b"auto\n"},
                   {"sys/class/hwmon/hwmon0": "../../devices/chip",
                    "sys/class/hwmon/hwmon1": str(secret),  # absolute: means <root>/<that path>, not the host's
                    "sys/class/hwmon/hwmon2": "../../../../../../../dev",
                    "sys/class/hwmon/hwmon3": "/dev/null",
                    "sys/devices/chip/subsystem": "../other"})
    opened: list[str] = []
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **k: opened.append(os.fspath(p)) or real_open(p, *a, **k))
    entries = _entries(build_probe_report(sysfs))
    monkeypatch.undo()
    assert entries["sys/devices/chip/temp"]["value"] == "40000\n"
    assert entries["sys/devices/chip/power/control"]["value"] == "auto\n"
    assert entries["sys/class/hwmon/hwmon0"]["followed"] is True
    for name in ("hwmon1", "hwmon2", "hwmon3"):
        assert entries[f"sys/class/hwmon/{name}"]["followed"] is False
    assert entries["sys/devices/chip/subsystem"] == {"path": "sys/devices/chip/subsystem", "kind": "link",
                                                     "mode": "0777", "target": "../other", "followed": False}
    assert "sys/devices/other/name" not in entries
    inside = [os.path.relpath(p, sysfs.root) for p in opened]
    assert inside and all(not rel.startswith(("..", "dev/")) and "outside" not in rel for rel in inside), opened


def test_triggers_are_listed_but_never_read(tmp_path, monkeypatch):
    sysfs = _plain(tmp_path, {"sys/class/devfreq/gpu/trigger": b"x", "sys/class/devfreq/gpu/cur_freq": b"1\n"}, {})
    real = SysfsRoot.read_head
    monkeypatch.setattr(SysfsRoot, "read_head",
                        lambda self, rel, n: pytest.fail(rel) if "trigger" in rel else real(self, rel, n))
    entries = _entries(build_probe_report(sysfs))
    assert "value" not in entries["sys/class/devfreq/gpu/trigger"]
    assert "trigger" in entries["sys/class/devfreq/gpu/trigger"]["skipped"]
    assert entries["sys/class/devfreq/gpu/cur_freq"]["value"] == "1\n"


def test_bytes_are_bounded_and_truncation_said(tmp_path):
    sysfs = _plain(tmp_path, {"etc/nv_tegra_release": b"# R36 (release)\n", "proc/version": b"1234",
                              "sys/class/devfreq/bin": b"\xff\xfe1"}, {})
    entries = _entries(build_probe_report(sysfs, max_bytes=4))
    assert entries["etc/nv_tegra_release"]["value"] == "# R3" and entries["etc/nv_tegra_release"]["truncated"]
    assert entries["proc/version"]["value"] == "1234" and not entries["proc/version"]["truncated"]  # exactly 4
    assert entries["sys/class/devfreq/bin"]["base64"] == "//4x"  # the bytes a rebuild needs, beside the text


def test_the_walk_stops_at_its_limits_and_says_so(tmp_path):
    tree = make_fake_tree(load_board("jetson-tx2"), tmp_path / "root")
    report = build_probe_report(tree.sysfs, max_entries=40)
    assert report["truncated"] is True and "40 entries" in report["stopped"]
    assert len(report["entries"]) == 40 and len(report["roots"]) == len(PROBE_ROOTS)
    assert any(r.get("walked") is False for r in report["roots"])
    shallow = _entries(build_probe_report(tree.sysfs, max_depth=1))
    assert shallow["sys/devices/system/cpu/cpufreq/policy0"]["listed"] is False
    assert not any(p.startswith("sys/devices/system/cpu/cpufreq/policy0/") for p in shallow)
    with pytest.raises(ValueError, match="positive"):
        build_probe_report(tree.sysfs, max_bytes=0)
