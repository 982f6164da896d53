"""State files that must not lie (issue 20.8) and `governor restore` on a path that is not there (15.8)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from governor.cli.main import main as governor_main
from governor.daemon import statefile
from governor.daemon.app import restore_leftover
from governor.daemon.statefile import StateFileError, clear_state, load_state, save_state
from governor.daemon.target import open_target
from governor.drivers.base import Baseline
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree

B = Baseline("cpu", (("sys/x/scaling_max_freq", "1479000"),))


def empty_state(path, root) -> None:
    """A well-formed state file (right format and version) that lists no baseline at all."""
    path.write_text(json.dumps({"format": statefile.FORMAT, "version": statefile.VERSION, "board": "jetson-nano",
                                "sysfs_root": str(root), "pid": 4242, "baselines": []}))


@pytest.fixture
def pinned_nano(tmp_path):
    """A fake Jetson Nano left pinned (as by a daemon that died) and its original bytes."""
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "tree")
    baseline = tree.snapshot_bytes()
    target = open_target("jetson-nano", str(tree.root))
    cpu = target.board.domains["cpu"]
    cpu.pin(min(cpu.available_hz()))
    target.close()
    return tree, baseline


def test_an_empty_baseline_list_is_never_written(tmp_path):
    path = tmp_path / "state.json"
    assert save_state(path, "host", "/", []) is False and not path.exists()  # a host without DVFS: nothing to keep
    assert save_state(path, "host", "/", [B]) is True and load_state(path).baselines == (B,)


def test_an_empty_state_file_is_not_restored_as_if_it_were_the_baseline(tmp_path, pinned_nano, capsys):
    """It used to print "restored ...", restore nothing and delete the file; the next daemon then took the
    pinned clocks for the board's baseline."""
    tree, _baseline = pinned_nano
    path = tmp_path / "state.json"
    empty_state(path, tree.root)
    pinned = tree.snapshot_bytes()
    with pytest.raises(StateFileError, match="lists nothing to restore"):
        restore_leftover(path)  # what a starting daemon does first: it must stop here, not snapshot the pins
    assert governor_main(["restore", "--state-file", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "restored" not in out and "lists nothing to restore" in err and "by hand" in err, (out, err)
    assert path.exists() and tree.snapshot_bytes() == pinned


def test_a_state_file_is_durable_file_then_directory(tmp_path, monkeypatch):
    """The rename is only durable once the directory is fsynced too (and so is the unlink)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(statefile.os, "fsync", recording_fsync)
    path = tmp_path / "state.json"
    save_state(path, "jetson-nano", "/", [B])
    assert synced == ["file", "dir"]
    clear_state(path)
    assert synced == ["file", "dir", "dir"] and not path.exists()
    clear_state(path)  # nothing there: nothing to sync, no error
    assert synced == ["file", "dir", "dir"]


def test_restore_of_a_path_that_does_not_exist_says_so(tmp_path, capsys):
    typo = tmp_path / "baseline.jsno"
    assert governor_main(["restore", "--state-file", str(typo)]) == 2
    out, err = capsys.readouterr()
    assert f"no state file at {typo}" in err and "clean" not in out + err, (out, err)
    assert governor_main(["restore", "--state-file", str(typo), "--quiet"]) == 2  # a typo is no clean stop


def test_restore_from_the_config_after_a_clean_stop_is_quietly_fine(tmp_path, capsys):
    """ExecStopPost runs `governor restore --config ... --quiet` after every stop: no file there is the norm."""
    config = tmp_path / "governor.toml"
    config.write_text(f"[daemon]\nstate_file = '{tmp_path / 'baseline.json'}'\n")
    assert governor_main(["restore", "--config", str(config), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert governor_main(["restore", "--config", str(config)]) == 0
    assert "the last stop was clean" in capsys.readouterr().out
