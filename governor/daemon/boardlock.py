"""One daemon per board: an flock(2) held for the daemon's life, which ``governor restore`` honours too.

Two daemons on one board fight: the second takes the first one's pinned clocks for its baseline,
and a restore run beside a live daemon puts the clocks back under it and deletes its state file
(after which a kill -9 of that daemon leaves the board pinned with nothing to restore). So the
daemon takes an exclusive flock on a lock file keyed by its board before it reads or writes
anything, and keeps it until exit; ``governor restore`` takes the same lock while it restores. The
kernel drops an flock when its holder dies, even by kill -9, so a held lock always means a live
owner and a dead one never blocks anybody (a pid file cannot say that: pids are reused).

Keys: a board (real or a fake tree) by its resolved sysfs root, so daemons on different trees run
side by side. A simulated board lives and dies with its process, so it is keyed by the owner's pid
and its state file: simulated daemons never block each other, but two of them sharing one state
file would clobber it. The lock files live in fixed places, not the config's (daemons started
with different configs must still meet): ``/run/governor`` for root (systemd's RuntimeDirectory,
writable under ProtectSystem=strict), else ``/tmp/governor-<uid>``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import weakref
from pathlib import Path

from governor.core.board import SIM_PREFIX
from governor.daemon.statefile import SavedState, StateFileError, load_state

__all__ = ["BoardBusyError", "BoardLock", "acquire", "hold_board", "hold_for_restore", "lock_dir", "lock_path"]


class BoardBusyError(StateFileError):
    """Another live process holds the board (or the state file); the message names its pid."""

    def __init__(self, message: str, owner: int | None = None) -> None:
        super().__init__(message)
        self.owner = owner

    @property
    def stop_it(self) -> str:
        """How to stop the owner, in words."""
        kill = f"`kill {self.owner}`" if self.owner else "kill it"
        return f"`sudo systemctl stop governor`, or {kill}"


class BoardLock:
    """A held lock; :meth:`release` (idempotent) removes the lock file and drops the lock.

    Dropped by the garbage collector too, so a start-up that fails before its closers exist does
    not keep the board locked in a long-lived process (tests build daemons in-process)."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._release = weakref.finalize(self, _unlock, path, fd)

    def release(self) -> None:
        self._release()

    @property
    def held(self) -> bool:
        return self._release.alive


def lock_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/run/governor")
    return Path(f"/tmp/governor-{os.geteuid()}")


def lock_path(board: str, sysfs_root: str, *, pid: int, state_file: Path) -> Path:
    """The lock file of ``board`` on ``sysfs_root`` (``pid`` and ``state_file`` key simulated boards)."""
    if board.startswith(SIM_PREFIX):
        key = f"{pid}\0{os.path.realpath(state_file)}"
        return lock_dir() / f"sim-{pid}-{_digest(key)}.lock"
    return lock_dir() / f"board-{_digest(os.path.realpath(sysfs_root))}.lock"


def acquire(path: Path, what: str) -> BoardLock:
    """Take the lock at ``path`` without waiting, or raise :class:`BoardBusyError` naming its owner.

    ``what`` describes the board for the owner's record and for the error message."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                owner, by_profile = _holder(path)
                pid = f"pid {owner}" if owner else "pid unknown: it is still starting"
                holder = "governor profile" if by_profile else "a running daemon"
                raise BoardBusyError(f"{what} is in use by {holder} ({pid})", owner) from None
            except BaseException:
                os.close(fd)
                raise
            if _same_file(path, fd):
                break
            # The previous holder removed the file between our open and our lock: lock the new one.
            os.close(fd)
        record = f"{os.getpid()}\n{what}\n".encode()
        os.pwrite(fd, record, 0)
        os.ftruncate(fd, len(record))
    except OSError as exc:
        raise StateFileError(f"cannot take the board lock {path} ({exc}); run as the user the daemon runs as") from exc
    return BoardLock(path, fd)


def hold_board(board: str, sysfs_root: str, state_file: Path) -> BoardLock:
    """The daemon's lock on its board, taken before anything else; raises :class:`BoardBusyError`.

    Also refuses a state file that belongs to a live daemon on another board (one file shared by two
    configs): restoring it at start would reset that daemon's clocks under it, and its exit would
    delete this daemon's baseline. Two simulated daemons may share one (the default state file):
    neither has a real board to lose."""
    simulated = board.startswith(SIM_PREFIX)
    what = (f"simulated board {board} with state file {state_file}" if simulated
            else f"the board at {os.path.realpath(sysfs_root)}")
    try:
        lock = acquire(lock_path(board, sysfs_root, pid=os.getpid(), state_file=state_file), what)
    except BoardBusyError as exc:
        raise BoardBusyError(f"{exc}: stop it first ({exc.stop_it}), or give this daemon another board",
                             exc.owner) from None
    try:
        saved = load_state(state_file)
    except StateFileError:
        return lock  # the leftover restore that comes next reports it
    if saved is not None and not (simulated and saved.board.startswith(SIM_PREFIX)):
        other = _state_lock_path(saved, state_file)
        if other != lock.path:
            try:
                acquire(other, _describe(saved, state_file)).release()
            except BoardBusyError as exc:
                lock.release()
                raise BoardBusyError(f"{exc}, and {state_file} is its state file: give this daemon its own "
                                     "(--state-file, or state_file in its config)", exc.owner) from None
    return lock


def hold_for_restore(state_file: Path) -> BoardLock | None:
    """The lock of the board ``state_file`` names, for the length of a restore (None: no state file).

    Raises :class:`BoardBusyError` while the daemon that wrote the file is alive: it restores the
    board itself when it stops, and restoring under it would reset its clocks and drop its file."""
    saved = load_state(state_file)
    if saved is None:
        return None
    try:
        return acquire(_state_lock_path(saved, state_file), _describe(saved, state_file))
    except BoardBusyError as exc:
        raise BoardBusyError(f"{exc}, which restores the board itself when it stops; {state_file} is its "
                             f"state file: stop the daemon ({exc.stop_it}) instead of restoring under it",
                             exc.owner) from None


def _state_lock_path(saved: SavedState, state_file: Path) -> Path:
    return lock_path(saved.board, saved.sysfs_root, pid=saved.pid, state_file=state_file)


def _describe(saved: SavedState, state_file: Path) -> str:
    if saved.board.startswith(SIM_PREFIX):
        return f"simulated board {saved.board} with state file {state_file}"
    return f"the board at {os.path.realpath(saved.sysfs_root)} ({saved.board})"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _same_file(path: Path, fd: int) -> bool:
    try:
        on_disk, held = os.stat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)


def _holder(path: Path) -> tuple[int | None, bool]:
    """The pid the holder wrote (None while it has not written it yet), and whether it is ``governor
    profile`` (it records itself so) rather than a daemon."""
    try:
        record = path.read_text(encoding="utf-8")
    except OSError:
        return None, False
    first = record.split("\n", 1)[0]
    return (int(first) if first.isdigit() else None), record.rstrip("\n").endswith("(governor profile)")


def _unlock(path: Path, fd: int) -> None:
    # Unlink while still holding the lock, and only our own file: a newcomer that opened it meanwhile
    # sees it gone (_same_file) and locks a fresh one, so no two holders ever coexist.
    try:
        if _same_file(path, fd):
            path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)
