"""The marker file at a fake tree's top: what makes a directory a fake root, and its shared state.

One JSON document (outside ``sys/``, so no driver globs it) holds everything a process needs to
give the tree kernel semantics: the board spec, the rules (which directory or file follows which
kernel behaviour), the injected faults and the little hidden kernel state (``/proc/stat`` lines of
offline CPUs). Any process that opens the tree reads it, so a daemon started as a subprocess gets
the same semantics and sees faults injected later. Writers hold an ``flock`` on a lock file next to
it for the whole read-modify-write, and replace the marker atomically; readers reload it when its
inode, size or mtime changed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from governor.drivers._sysfs import FAKE_TREE_MARKER, is_fake_tree

__all__ = ["FORMAT", "LOCK_NAME", "MARKER_NAME", "MarkerCache", "empty_state", "is_fake_root", "locked", "save"]

MARKER_NAME = FAKE_TREE_MARKER  # defined by the drivers, so that a daemon can tell a fake root without us
LOCK_NAME = ".governor-fake-tree.lock"
FORMAT = 1

State = dict[str, Any]


def empty_state(spec_json: dict[str, Any], *, variant: str, seed: int, hwmon_base: int) -> State:
    return {
        "format": FORMAT,
        "board": spec_json["board"]["name"],
        "variant": variant,
        "seed": seed,
        "hwmon_base": hwmon_base,
        "spec": spec_json,
        "nodes": {},  # real dir -> rule for the files inside it
        "files": {},  # real file -> rule for that file
        "faults": {"frozen": [], "denied": {}, "failing": {}, "vanished": []},
        "stash": {"proc_stat": {}},
    }


def is_fake_root(root: str | os.PathLike[str]) -> bool:
    return is_fake_tree(root)


def save(root: Path, state: State) -> None:
    tmp = root / f"{MARKER_NAME}.tmp{os.getpid()}"
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
    os.replace(tmp, root / MARKER_NAME)


@contextlib.contextmanager
def locked(root: Path) -> Iterator[None]:
    """Exclusive across processes for one read-modify-write of the tree."""
    with open(root / LOCK_NAME, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class MarkerCache:
    """The marker's content, reloaded only when the file changed."""

    def __init__(self, root: Path) -> None:
        self.path = root / MARKER_NAME
        self._key: tuple[int, int, int] | None = None
        self._state: State = {}

    def get(self) -> State:
        try:
            st = self.path.stat()
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{self.path} is gone: this is no longer a fake tree") from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._key:
            self._state = json.loads(self.path.read_text())
            self._key = key
        return self._state
