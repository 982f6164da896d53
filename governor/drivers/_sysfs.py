"""The one place that opens files under the board root (sysfs, procfs, debugfs).

Every driver takes a :class:`SysfsRoot`. On a board the root is ``/``; in tests it is a fake tree
built by :mod:`governor.testing`, whose :class:`~governor.testing.FakeSysfsRoot` subclass adds the
kernel's write semantics (snapping, EINVAL, read-only files). Paths are always relative to the root
(``"sys/devices/system/cpu/online"``), so nothing can escape it by accident.

Errors are translated into :class:`SysfsError` subclasses whose messages say what to do, because
the raw ``PermissionError: [Errno 13]`` tells a Jetson owner nothing about udev rules or sudo.

A fake tree announces itself with a marker file at its top (:data:`FAKE_TREE_MARKER`);
:func:`is_fake_tree` lets a composition root tell one from a real root without importing the fakes.
"""

from __future__ import annotations

import errno
import glob
import os
from pathlib import Path

__all__ = [
    "FAKE_TREE_MARKER",
    "SysfsError",
    "SysfsMissing",
    "SysfsPermission",
    "SysfsRejected",
    "SysfsRoot",
    "is_fake_tree",
    "read_denied",
    "write_error",
]


class SysfsError(OSError):
    """A sysfs read or write failed; ``str()`` says what to do about it."""


class SysfsMissing(SysfsError):
    """The node does not exist (sensor vanished, driver not loaded, wrong kernel)."""


class SysfsPermission(SysfsError):
    """The node exists but we may not write (or read) it."""


class SysfsRejected(SysfsError):
    """The kernel refused the value (EINVAL, EBUSY, EIO...)."""


_PERMISSION_HINT = (
    "run the governor as root (the systemd unit does), or give its group write access with a udev rule, "
    "e.g. SUBSYSTEM==\"cpu\", ACTION==\"add\", RUN+=\"/bin/chgrp governor /sys%p/cpufreq/scaling_*_freq\"; "
    "debugfs nodes (Jetson EMC) need root and `mount -t debugfs none /sys/kernel/debug`"
)


# The file at the top of a fake tree (governor.testing writes it; its content is the fakes' business).
FAKE_TREE_MARKER = ".governor-fake-tree.json"


def is_fake_tree(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a fake tree built by :mod:`governor.testing` (its marker file is there)."""
    return (Path(root) / FAKE_TREE_MARKER).is_file()


class SysfsRoot:
    """Reads and writes text files below ``root``. Writes skip values that are already in place."""

    def __init__(self, root: str | os.PathLike[str] = "/") -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching ``pattern`` (sorted, symlinks followed as the kernel's are)."""
        base = str(self.root)
        hits = glob.glob(os.path.join(glob.escape(base), pattern.lstrip("/")))
        return sorted(os.path.relpath(h, base) for h in hits)

    def realpath(self, rel: str) -> str:
        """Resolve symlinks, relative to the root (e.g. class/devfreq entries into devices/)."""
        return os.path.relpath(os.path.realpath(self.path(rel)), os.path.realpath(self.root))

    def listdir(self, rel: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(rel)))
        except FileNotFoundError as exc:
            raise SysfsMissing(errno.ENOENT, f"{rel} does not exist") from exc

    def read_bytes(self, rel: str) -> bytes:
        try:
            with open(self.path(rel), "rb") as fh:
                return fh.read()
        except FileNotFoundError as exc:
            missing = f"{rel} does not exist (sensor or driver missing on this kernel?)"
            raise SysfsMissing(errno.ENOENT, missing) from exc
        except PermissionError as exc:
            raise read_denied(rel) from exc
        except OSError as exc:
            code = exc.errno or errno.EIO
            raise SysfsRejected(code, f"reading {rel} failed: {os.strerror(code)}") from exc

    def read_head(self, rel: str, max_bytes: int) -> bytes:
        """At most ``max_bytes`` leading bytes of a file, for reports of what a board shows.

        Unlike :meth:`read_bytes` this raises the kernel's own ``OSError`` untranslated (its errno,
        EACCES or EPERM or EAGAIN, is what a report records), never follows a symlink in the last
        component, and never blocks (``O_NONBLOCK``): a reader must not wait on a node.
        """
        fd = os.open(self.path(rel), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            chunks: list[bytes] = []
            left = max_bytes
            while left > 0:  # sysfs answers in one read; procfs and debugfs files may take several
                chunk = os.read(fd, left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def read(self, rel: str) -> str:
        """The file's text without the trailing newline."""
        return self.read_bytes(rel).decode("utf-8", "replace").rstrip("\n")

    def read_int(self, rel: str) -> int:
        text = self.read(rel).strip()
        try:
            return int(text)
        except ValueError as exc:
            raise SysfsRejected(errno.EINVAL, f"{rel} holds {text!r}, not an integer") from exc

    def read_list(self, rel: str) -> list[str]:
        return self.read(rel).split()

    def write(self, rel: str, value: str | int, *, skip_same: bool = True) -> None:
        """Write ``value`` (a newline is not added: sysfs accepts bare values)."""
        text = str(value)
        if skip_same:
            try:
                if self.read(rel).strip() == text.strip():
                    return
            except SysfsError:
                pass
        self._write_text(rel, text)

    def _write_text(self, rel: str, text: str) -> None:
        try:
            self._write_raw(rel, text)
        except SysfsError:
            raise
        except OSError as exc:
            raise write_error(rel, text, exc) from exc

    def _write_raw(self, rel: str, text: str) -> None:
        """The raw write, raising plain OSError; fake roots override this to add kernel semantics."""
        with open(self.path(rel), "r+b" if self.path(rel).exists() else "wb") as fh:
            fh.write(text.encode())
            fh.truncate()


def read_denied(rel: str) -> SysfsPermission:
    return SysfsPermission(errno.EACCES, f"cannot read {rel}: {_PERMISSION_HINT}")


def write_error(rel: str, text: str, exc: OSError) -> SysfsError:
    """Translate a failed write into the SysfsError that says what to do."""
    if isinstance(exc, FileNotFoundError):
        return SysfsMissing(errno.ENOENT, f"{rel} does not exist; cannot write {text!r}")
    if isinstance(exc, PermissionError):
        return SysfsPermission(errno.EACCES, f"cannot write {text!r} to {rel}: {_PERMISSION_HINT}")
    code = exc.errno or errno.EIO
    detail = f" ({exc.strerror})" if exc.strerror and exc.strerror != os.strerror(code) else ""
    return SysfsRejected(code, f"the kernel rejected {text!r} for {rel}: {os.strerror(code)}{detail}")
