"""The baseline state file: what the board looked like before the governor touched it.

Written (atomically: temp file, fsync, rename, then an fsync of the directory, so the rename itself
survives a power loss) *before* the first hardware write, and removed only after a successful
restore. If the daemon dies (kill -9, power loss), the file survives and the next start, or
``governor restore``, puts the baseline back before doing anything else (tuned's rollback storage,
but JSON instead of pickle so it can be read and trusted).

A file that lists no baseline is never written and never trusted: restoring it would change
nothing while saying "restored", and a daemon that took it for the truth would then save the
clocks it finds, perhaps pinned by the daemon that died, as the board's baseline.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from governor.drivers.base import Baseline

__all__ = ["SavedState", "StateFileError", "clear_state", "load_state", "save_state", "unrestored_note"]

FORMAT = "dnn-governor-baseline"
VERSION = 1


class StateFileError(RuntimeError):
    """The state file exists but cannot be used; the message says what to do."""


@dataclass(frozen=True)
class SavedState:
    board: str
    sysfs_root: str
    baselines: tuple[Baseline, ...]
    pid: int


def save_state(path: Path, board: str, sysfs_root: str, baselines: Sequence[Baseline]) -> bool:
    """Write the state file; returns False, writing nothing, when there is no baseline to keep (a host
    without DVFS: the daemon writes nothing there, so there is nothing to put back)."""
    if not baselines:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "board": board,
        "sysfs_root": sysfs_root,
        "pid": os.getpid(),
        "baselines": [b.to_json() for b in baselines],
    }
    fd, tmp = tempfile.mkstemp(prefix=".baseline-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return True


def load_state(path: Path) -> SavedState | None:
    """The saved state, or None when there is none (clean previous exit)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StateFileError(
            f"{path} is unreadable ({exc}); check the board by hand (`governor status`), then delete the file"
        ) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise StateFileError(f"{path} is not a dnn-governor baseline file of version {VERSION}; move it away")
    try:
        baselines = tuple(Baseline.from_json(b) for b in doc["baselines"])
        saved = SavedState(str(doc["board"]), str(doc["sysfs_root"]), baselines, int(doc.get("pid", 0)))
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise StateFileError(f"{path} is damaged ({exc}); check the board by hand, then delete the file") from exc
    if not saved.baselines:
        raise StateFileError(
            f"{path} lists nothing to restore (no baseline), so how the board was before the daemon is unknown "
            "and nothing was restored; check the board by hand (`governor status`), then delete the file")
    return saved


def clear_state(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        return
    _fsync_dir(path.parent)


def unrestored_note(error: BaseException, path: Path) -> str:
    """The line a daemon whose restore failed at exit leaves: what stays pinned, and what to run."""
    path = path.absolute()
    return (f"the board is still pinned where the restore failed: {error}. Those parts stay as the daemon set them; "
            f"their baseline is kept in {path}: once the cause is fixed, run `governor restore --state-file {path}` "
            "(a systemd unit's ExecStopPost tries that once more by itself)")


def _fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` durable (the file's own fsync does not cover its name)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
