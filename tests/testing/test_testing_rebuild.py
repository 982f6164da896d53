"""tree_from_probe_report: a probe report of every board's fake tree rebuilds into an equivalent tree,
which the drivers probe as they probe the original; a hostile report cannot write outside its directory."""

from __future__ import annotations

import copy
import errno
import os
import stat

import pytest

from governor.drivers._sysfs import SysfsRoot
from governor.drivers.board import open_board
from governor.drivers.catalogue import board_names, load_board
from governor.drivers.probe_report import build_probe_report
from governor.testing import FakeTree, make_fake_tree, open_root, tree_from_probe_report

BOARDS = board_names()


def _comparable(report: dict) -> dict[str, tuple]:
    """Per path what a rebuild must keep: kind, mode, first bytes or read error, link target.
    ``size`` is left out (sysfs says 4096, a rebuilt file its true length)."""
    return {e["path"]: (e["kind"], e["mode"], e.get("value"), e.get("base64"), e.get("error"), e.get("target"),
                        e.get("skipped")) for e in report["entries"]}


@pytest.fixture(scope="module")
def trees(fake_module_dir) -> dict[str, FakeTree]:
    return {name: make_fake_tree(load_board(name), fake_module_dir / name, seed=2) for name in BOARDS}


@pytest.mark.parametrize("board", BOARDS)
def test_a_rebuilt_tree_reports_the_same_paths_bytes_and_modes(trees, fake_dir, board):
    report = build_probe_report(trees[board].sysfs)
    rebuilt = tree_from_probe_report(report, fake_dir / "rebuilt", spec=load_board(board))
    again = build_probe_report(open_root(rebuilt.root))
    assert _comparable(again) == _comparable(report)
    assert again["roots"] == report["roots"]
    for path in rebuilt.truncated:  # only the kept bytes came back, and the report said so
        assert os.path.getsize(rebuilt.root / path) == report["limits"]["max_bytes"]


def _probed(spec, sysfs) -> dict:
    board = open_board(spec, sysfs, clock=iter(range(10**6)).__next__)
    try:
        obs = board.sample()
        return {
            "domains": {n: (d.available_hz(), obs.domains[n]) for n, d in board.domains.items()},
            # names only: the INA231 reads 0 until the driver enables it, and the fake kernel's rule that
            # then fills its readings is not in a report (a rebuilt tree stores what is written)
            "rails": sorted(obs.power_mw),
            "temps": dict(obs.temps_c),
            "offline": [z for t in board.thermal for z in getattr(t, "offline", ())],
            # the rebuilt tree has no proc/stat (not reported), so CPU load is the one part left out
            "unavailable": sorted(n for n in board.unavailable if n != "cpu-load"),
            "probes": {n: p.result for n, p in board.probes.items() if n != "cpu-load"},
        }
    finally:
        board.close()


@pytest.mark.parametrize("board", BOARDS)
def test_the_drivers_probe_a_rebuilt_tree_as_the_original(trees, fake_dir, board):
    spec = load_board(board)
    report = build_probe_report(trees[board].sysfs)
    rebuilt = tree_from_probe_report(report, fake_dir / "rebuilt", spec=spec)
    assert _probed(spec, open_root(rebuilt.root)) == _probed(spec, trees[board].sysfs)


def test_powered_off_zones_fail_again_in_a_rebuilt_tree(trees, fake_dir):
    report = build_probe_report(trees["jetson-agx-orin"].sysfs)
    failed = {e["path"] for e in report["entries"] if e.get("error") == "EAGAIN"}
    assert failed and all(p.endswith("/temp") for p in failed)
    with_spec = tree_from_probe_report(report, fake_dir / "fake", spec=load_board("jetson-agx-orin"))
    assert with_spec.fake and set(with_spec.read_errors) == failed
    sysfs = open_root(with_spec.root)
    with pytest.raises(OSError) as caught:
        sysfs.read(next(iter(failed)))
    assert caught.value.errno == errno.EAGAIN
    plain = tree_from_probe_report(report, fake_dir / "plain")
    assert not plain.fake and dict(plain.read_errors) == dict(with_spec.read_errors)
    assert type(open_root(plain.root)) is SysfsRoot  # no marker: a plain directory, the errors returned


def test_links_stay_links_and_absolute_targets_stay_inside(fake_dir):
    report = _report([
        {"path": "proc/device-tree", "kind": "link", "mode": "0777", "target": "/sys/firmware/devicetree/base"},
        {"path": "sys/firmware/devicetree/base/model", "kind": "file", "mode": "0444", "value": "Board\x00"},
        {"path": "sys/class/x/far", "kind": "link", "mode": "0777", "target": "../../../../../../sys/devices/d"},
        {"path": "sys/devices/d", "kind": "dir", "mode": "0555"},
        {"path": "sys/devices/d/w", "kind": "file", "mode": "0200", "value": "", "error": "EACCES"},
        {"path": "sys/devices/d/bin", "kind": "file", "mode": "0444", "value": "\ufffd", "base64": "/w=="},
    ])
    root = tree_from_probe_report(report, fake_dir / "t").root
    assert os.readlink(root / "proc/device-tree") == "../sys/firmware/devicetree/base"
    assert (root / "proc/device-tree/model").read_bytes() == b"Board\x00"
    assert os.readlink(root / "sys/class/x/far") == "../../devices/d"  # .. at the top stays at the top
    assert stat.S_IMODE((root / "sys/devices/d").stat().st_mode) == 0o555
    assert stat.S_IMODE((root / "sys/devices/d/w").stat().st_mode) == 0o200
    assert (root / "sys/devices/d/bin").read_bytes() == b"\xff"


@pytest.mark.parametrize(("entry", "words"), [
    ({"path": "../escape", "kind": "file", "mode": "0644", "value": "x"}, "not a plain relative path"),
    ({"path": "/etc/passwd", "kind": "file", "mode": "0644", "value": "x"}, "not a plain relative path"),
    ({"path": "a/./b", "kind": "dir", "mode": "0755"}, "not a plain relative path"),
    ({"path": "link/inside", "kind": "file", "mode": "0644", "value": "x"}, "lies below the link"),
    ({"path": "f", "kind": "fifo", "mode": "0644"}, "has kind"),
    ({"path": "f", "kind": "file", "mode": "rw-r--r--", "value": "x"}, "not octal"),
    ({"path": ".governor-fake-tree.json", "kind": "file", "mode": "0644", "value": "{}"}, "own file"),
])
def test_a_hostile_report_is_refused_before_it_writes_outside(fake_dir, entry, words):
    link = {"path": "link", "kind": "link", "mode": "0777", "target": "/tmp"}
    with pytest.raises(ValueError, match=words):
        tree_from_probe_report(_report([link, entry]), fake_dir / "t")
    assert not (fake_dir / "escape").exists() and not (fake_dir / "inside").exists()


def test_not_a_report_and_a_used_directory_are_refused(fake_dir):
    with pytest.raises(ValueError, match="not a governor-probe-report version 1"):
        tree_from_probe_report({"format": "something", "entries": []}, fake_dir / "a")
    (fake_dir / "b").mkdir()
    (fake_dir / "b" / "x").write_text("")
    with pytest.raises(ValueError, match="not empty"):
        tree_from_probe_report(_report([]), fake_dir / "b")


def _report(entries: list[dict]) -> dict:
    return copy.deepcopy({"format": "governor-probe-report", "version": 1, "roots": [], "entries": entries,
                          "truncated": False})
