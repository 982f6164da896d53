"""One daemon per board (issue 20.4): the board lock, and `governor restore` honouring it.

The owner is a small subprocess that takes the daemon's lock (``hold_board``) and sleeps, so the
tests need no model and no profiling; tests/reliability/test_reliability_boardlock.py does the same
with real ``governor serve`` daemons. kill -9 of the holder shows the kernel frees the board.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from governor.cli.main import main as governor_main
from governor.daemon.boardlock import BoardBusyError, acquire, hold_board, hold_for_restore, lock_path
from governor.daemon.statefile import load_state, save_state
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree

CPU = "sys/devices/system/cpu/cpufreq/policy0"
HOLDER = """
import sys, time
from pathlib import Path
from governor.daemon.boardlock import hold_board
from governor.daemon.statefile import save_state
from governor.drivers.base import Baseline
lock = hold_board(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
if sys.argv[4:] == ["save"]:  # a state file of its own, as a daemon writes after taking the lock
    save_state(Path(sys.argv[3]), sys.argv[1], sys.argv[2], [Baseline("cpu", (("sys/x", "1"),))])
print("held", flush=True)
time.sleep(120)
"""


class Holder:
    """A process that holds the daemon's lock on a board, as a running `governor serve` does."""

    def __init__(self, board: str, root: Path, state: Path, *extra: str) -> None:
        self.lock = lock_path(board, str(root), pid=0, state_file=state)
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, board, str(root), str(state), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "held", or the holder's traceback once it has exited
        assert line.strip() == "held", line + self.proc.stdout.read()
        self.pid = self.proc.pid
        if board.startswith("sim:"):
            self.lock = lock_path(board, str(root), pid=self.pid, state_file=state)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def holders():
    made: list[Holder] = []

    def start(board: str, root: Path, state: Path, *extra: str) -> Holder:
        made.append(Holder(board, root, state, *extra))
        return made[-1]

    yield start
    for holder in made:
        holder.kill9()
        acquire(holder.lock, "cleanup").release()  # the file a killed holder leaves (no lock on it now)


@pytest.fixture
def pinned(tmp_path):
    """A fake Jetson Nano whose baseline is in a state file, then pinned as a daemon would: (tree, state, baseline)."""
    tree = make_fake_tree(load_board("jetson-nano"), tmp_path / "tree")
    baseline = tree.snapshot_bytes()
    target = open_target("jetson-nano", str(tree.root))
    state = tmp_path / "state.json"
    save_state(state, "jetson-nano", target.root, target.board.snapshot())
    cpu = target.board.domains["cpu"]
    cpu.pin(min(cpu.available_hz()))
    target.close()
    assert tree.snapshot_bytes() != baseline
    return tree, state, baseline


def test_a_second_daemon_on_the_board_is_refused_naming_the_owner_until_it_dies(tmp_path, holders):
    first = holders("jetson-nano", tmp_path, tmp_path / "a.json")
    with pytest.raises(BoardBusyError) as busy:
        hold_board("auto", str(tmp_path), tmp_path / "b.json")  # another config: other state file and name
    assert busy.value.owner == first.pid and f"kill {first.pid}" in str(busy.value), busy.value
    assert "systemctl stop governor" in str(busy.value)
    first.kill9()  # the kernel drops the flock of a dead process, even after kill -9
    lock = hold_board("auto", str(tmp_path), tmp_path / "b.json")
    assert lock.path.exists()
    lock.release()
    assert not lock.path.exists() and not lock.held
    lock.release()  # idempotent: shutdown and a failed start may both call it


def test_other_boards_and_simulated_boards_do_not_block_each_other(tmp_path, holders):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    holders("jetson-nano", tmp_path / "a", tmp_path / "a.json")
    shared = tmp_path / "sim.json"  # simulated daemons started with no --state-file share the default one
    holders("sim:jetson-nano", tmp_path, shared, "save")
    locks = [hold_board("jetson-nano", str(tmp_path / "b"), tmp_path / "b.json"),
             hold_board("sim:odroid-xu3", str(tmp_path), shared)]
    assert len({lock.path for lock in locks}) == 2
    for lock in locks:
        lock.release()


def test_a_real_board_refuses_the_state_file_of_a_live_simulated_daemon(tmp_path, holders):
    """The simulated daemon's exit would delete the real board's baseline from under it."""
    shared = tmp_path / "baseline.json"
    owner = holders("sim:jetson-nano", tmp_path, shared, "save")
    with pytest.raises(BoardBusyError, match="give this daemon its own") as busy:
        hold_board("jetson-nano", str(tmp_path), shared)
    assert busy.value.owner == owner.pid


def test_restore_refuses_while_the_daemon_that_wrote_the_state_lives(pinned, holders, capsys):
    tree, state, baseline = pinned
    owner = holders("jetson-nano", tree.root, state)
    held = tree.snapshot_bytes()
    assert governor_main(["restore", "--state-file", str(state)]) == 2
    err = capsys.readouterr().err
    assert f"pid {owner.pid}" in err and f"kill {owner.pid}" in err and "restores the board itself" in err, err
    # Nothing was reset under the live daemon, and its state file is still there for after a crash.
    assert tree.snapshot_bytes() == held and load_state(state) is not None
    owner.kill9()
    assert governor_main(["restore", "--state-file", str(state)]) == 0
    assert "restored the baseline of jetson-nano" in capsys.readouterr().out
    assert tree.snapshot_bytes() == baseline and not state.exists()
    assert not lock_path("jetson-nano", str(tree.root), pid=0, state_file=state).exists()


def test_a_daemon_refuses_the_state_file_of_a_live_daemon_on_another_board(pinned, holders, tmp_path):
    """Two configs sharing one state file: the second daemon's leftover restore would reset the first's clocks."""
    tree, state, _baseline = pinned
    owner = holders("jetson-nano", tree.root, state)
    other = tmp_path / "other-tree"
    other.mkdir()
    with pytest.raises(BoardBusyError, match="give this daemon its own") as busy:
        hold_board("jetson-nano", str(other), state)
    assert busy.value.owner == owner.pid
    assert not lock_path("jetson-nano", str(other), pid=0, state_file=state).exists()  # its own lock let go
    owner.kill9()
    hold_board("jetson-nano", str(other), state).release()  # the writer is dead: its leftover may be restored


def test_the_restore_holds_the_board_while_it_restores(pinned):
    tree, state, _baseline = pinned
    lock = hold_for_restore(state)
    assert lock is not None
    with pytest.raises(BoardBusyError):
        hold_board("jetson-nano", str(tree.root), state.with_name("other.json"))  # no daemon starts halfway
    lock.release()
