"""File plumbing under a fake root: mode-keeping atomic writes, relative symlinks, removal.

Sysfs files are tiny and other processes (a daemon under test, the simulator) read them while the
fake kernel updates them, so every kernel-side write replaces the file atomically: a reader sees the
old text or the new one, never half. Symlinks are relative so a tree can be moved or copied.
Permission bits are data here (0444 read-only, 0400 root-only): the fake kernel checks them itself,
because tests often run as root, who ignores them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

__all__ = ["READ_ONLY", "READ_WRITE", "ROOT_ONLY", "TreeFiles"]

READ_ONLY = 0o444
READ_WRITE = 0o644
ROOT_ONLY = 0o400


class TreeFiles:
    """Reads and writes files below ``root``; ``rel`` paths are relative to it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._made: set[Path] = set()  # directories known to exist (saves a mkdir per file)

    def abs(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return os.path.lexists(self.abs(rel))

    def is_file(self, rel: str) -> bool:
        return self.abs(rel).is_file()

    def mode(self, rel: str) -> int:
        return stat.S_IMODE(self.abs(rel).stat().st_mode)

    def read(self, rel: str) -> str:
        """Text without the trailing newline."""
        return self.abs(rel).read_text(encoding="utf-8", errors="replace").rstrip("\n")

    def write(self, rel: str, data: str | bytes, mode: int | None = None, *, atomic: bool = True) -> None:
        """Create or replace a file; ``mode`` defaults to the existing file's (else read-only).

        ``atomic=False`` is for building a tree nobody reads yet: one open, no temporary file.
        """
        path = self.abs(rel)
        if path.is_symlink():
            path = Path(os.path.realpath(path))
        payload = data.encode() if isinstance(data, str) else data
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)
        if mode is None:
            mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else READ_ONLY
        if not atomic:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, payload)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
            return
        fd, tmp = tempfile.mkstemp(prefix=".fake-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def link(self, rel: str, target_rel: str) -> None:
        """Make ``rel`` a relative symlink to ``target_rel`` (replacing any old link)."""
        link = self.abs(rel)
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        os.symlink(os.path.relpath(self.abs(target_rel), link.parent), link)

    def remove(self, rel: str) -> None:
        """Remove a file, a symlink (not its target) or a directory tree; missing is fine."""
        path = self.abs(rel)
        self._made.clear()
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
