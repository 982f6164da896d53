"""The document ``governor probe-report`` writes: a board's relevant sysfs/debugfs layout, read only.

Theory of operation
-------------------
The fake trees of :mod:`governor.testing` follow the kernels' documented layouts; a real board is the
only way to find where they are wrong. This walks the roots of
:data:`~governor.drivers.probe_roots.PROBE_ROOTS` below a :class:`SysfsRoot` and records, per node,
its path relative to the root, its mode (octal text), its kind (``file``, ``dir`` or ``link``) and:
for a file its size as ``lstat`` gives it (sysfs says 4096 for every attribute) and either its first
``max_bytes`` bytes (UTF-8, errors replaced; ``base64`` beside it when the bytes are not UTF-8, so a
rebuild is exact) or the read's errno name (``EACCES`` for a write-only attribute, ``EAGAIN`` for a
powered-off JetPack 6 thermal zone: the failure is the information); for a link its target text.

It never writes, never reads more than ``max_bytes`` of a file, never reads a node whose name
:data:`~governor.drivers.probe_roots.SKIP_NAME_PATTERNS` lists, skips what is neither a regular file, a
directory nor a link, and never lets the operating system follow a link: links are resolved by name
inside the root, and followed only as :mod:`~governor.drivers.probe_roots` says. The walk is bounded:
``max_depth`` levels below each root, ``max_entries`` nodes in all (the document says where it stopped).
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import glob
import os
import posixpath
import stat
from datetime import datetime, timezone
from typing import Any

from governor import __version__
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.probe_roots import DT_LINK_INTO, FOLLOW_INTO, PROBE_ROOTS, SKIP_NAME_PATTERNS

__all__ = ["FORMAT", "MAX_BYTES", "MAX_DEPTH", "MAX_ENTRIES", "VERSION", "build_probe_report", "errno_name"]

FORMAT = "governor-probe-report"
VERSION = 1
MAX_BYTES = 256  # leading bytes kept per file: every sysfs value the drivers read fits
MAX_DEPTH = 8  # levels below a root: the deepest driver file is 4 (devfreq/<gpu>/userspace/set_freq)
MAX_ENTRIES = 20_000  # a real Jetson's roots hold a few thousand nodes
_MAX_HOPS = 16  # links resolved for one path, as the kernel's own limit (40) but smaller: sysfs needs 2
_LIST_DIRS = ("sys/class/", "sys/bus/")  # directories of links whose entries are followed
_ROOT, _LINKED, _DEVICE, _OF_NODE = range(4)  # walk phases, deepest walks first (see _Walker.walk)


def errno_name(exc: OSError) -> str:
    """``EACCES``, ``EAGAIN``...: the symbolic name of a failed call's errno (``EIO`` when it has none)."""
    code = exc.errno if exc.errno is not None else errno.EIO
    return errno.errorcode.get(code, str(code))


def build_probe_report(
    sysfs: SysfsRoot, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH, max_entries: int = MAX_ENTRIES,
) -> dict[str, Any]:
    """The whole document (module doc); ``max_bytes`` in bytes, ``max_depth`` in directory levels."""
    if max_bytes < 1 or max_depth < 0 or max_entries < 1:
        raise ValueError("max_bytes and max_entries must be positive and max_depth at least 0")
    walker = _Walker(sysfs, max_bytes, max_depth, max_entries)
    roots = walker.walk(PROBE_ROOTS)
    uname = os.uname()
    return {
        "format": FORMAT,
        "version": VERSION,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "governor_version": __version__,
        "host": {"kernel": uname.release, "machine": uname.machine},
        "sysfs_root": str(sysfs.root),
        "limits": {"max_bytes": max_bytes, "max_depth": max_depth, "max_entries": max_entries},
        "roots": roots,
        "entries": [walker.entries[rel] for rel in sorted(walker.entries)],
        "truncated": walker.stopped is not None,
        "stopped": walker.stopped,
    }


class _Full(Exception):
    """``max_entries`` reached: the walk ends here."""


class _Walker:
    def __init__(self, sysfs: SysfsRoot, max_bytes: int, max_depth: int, max_entries: int) -> None:
        self.sysfs = sysfs
        self.max_bytes, self.max_depth, self.max_entries = max_bytes, max_depth, max_entries
        self.entries: dict[str, dict[str, Any]] = {}
        self.stopped: str | None = None
        self._queues: list[list[tuple[str, int]]] = [[], [], [], []]  # per phase: (real dir, depth)
        self._full: list[str] = []  # bases walked with the full depth: what lies below them is covered
        self._walked: set[str] = set()

    def walk(self, patterns: tuple[str, ...]) -> list[dict[str, Any]]:
        """Walk every root, then the links they lead to; returns the ``roots`` list of the document."""
        roots: list[dict[str, Any]] = []
        try:
            for pattern in patterns:
                roots.append(self._root(pattern))
            # Later phases walk shallower; each only adds to later ones, so one pass in order is enough.
            for phase in (_LINKED, _DEVICE, _OF_NODE):
                queue = self._queues[phase]
                while queue:
                    self._base(*queue.pop(0), phase=phase)
        except _Full:
            self.stopped = f"stopped after {self.max_entries} entries (max_entries); later nodes are not listed"
            for pattern in patterns[len(roots):]:  # said, not walked: whether each is there is still news
                present = bool(self.sysfs.glob(pattern)) or os.path.lexists(self.sysfs.path(pattern))
                roots.append({"path": pattern, "present": present, "walked": False})
        return roots

    # -- roots and bases ------------------------------------------------------------------------
    def _root(self, pattern: str) -> dict[str, Any]:
        if not glob.has_magic(pattern):
            found, error = self._walk_root(pattern)
            return {"path": pattern, "present": found, **({"error": error} if error else {})}
        matches = self.sysfs.glob(pattern)
        for rel in matches:
            self._walk_root(rel)
        return {"path": pattern, "present": bool(matches), "matches": matches}

    def _walk_root(self, rel: str) -> tuple[bool, str]:
        """Walk one root; (whether it exists, the errno name that hid it or "")."""
        try:
            parent = self._resolve(posixpath.dirname(rel))
            if parent is None:
                return False, ""
            real = posixpath.join(parent, posixpath.basename(rel)) if parent else posixpath.basename(rel)
            st = os.lstat(self.sysfs.path(real))
        except FileNotFoundError:
            return False, ""
        except OSError as exc:  # debugfs without root: EACCES on the way down
            return False, errno_name(exc)
        self._full.append(real)
        self._walked.add(real)
        self._visit(real, st, self.max_depth, phase=_ROOT, level=0)
        return True, ""

    def _base(self, real: str, depth: int, *, phase: int) -> None:
        """Walk a followed link's target, unless a walk already covers it."""
        if real in self._walked or any(real == b or real.startswith(b + "/") for b in self._full):
            return
        self._walked.add(real)
        if depth == self.max_depth:
            self._full.append(real)
        try:
            st = os.lstat(self.sysfs.path(real))
        except OSError:
            return  # it went away between the link and now: the link entry says where it pointed
        self._visit(real, st, depth, phase=phase, level=0)

    # -- nodes ----------------------------------------------------------------------------------
    def _record(self, rel: str, entry: dict[str, Any]) -> None:
        if rel in self.entries:
            return
        if len(self.entries) >= self.max_entries:
            raise _Full
        self.entries[rel] = {"path": rel, **entry}

    def _visit(self, rel: str, st: os.stat_result, depth: int, *, phase: int, level: int) -> None:
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if stat.S_ISLNK(st.st_mode):
            self._link(rel, mode, phase=phase, level=level)
        elif stat.S_ISDIR(st.st_mode):
            self._dir(rel, mode, depth, phase=phase, level=level)
        elif stat.S_ISREG(st.st_mode):
            self._record(rel, {"kind": "file", "mode": mode, "size": st.st_size, **self._read(rel, st)})
        # anything else (a device node, a fifo, a socket) is never opened and not listed

    def _dir(self, rel: str, mode: str, depth: int, *, phase: int, level: int) -> None:
        if depth <= 0:
            self._record(rel, {"kind": "dir", "mode": mode, "listed": False})
            return
        try:
            with os.scandir(self.sysfs.path(rel)) as it:
                children = sorted((e.name, e.stat(follow_symlinks=False)) for e in it)
        except OSError as exc:
            self._record(rel, {"kind": "dir", "mode": mode, "listed": False, "error": errno_name(exc)})
            return
        self._record(rel, {"kind": "dir", "mode": mode, "listed": True})
        for name, child in children:
            self._visit(f"{rel}/{name}", child, depth - 1, phase=phase, level=level + 1)

    def _read(self, rel: str, st: os.stat_result) -> dict[str, Any]:
        name = posixpath.basename(rel)
        skip = next((p for p in SKIP_NAME_PATTERNS if fnmatch.fnmatchcase(name, p)), None)
        if skip:
            return {"skipped": f"never read: the name matches {skip}"}
        try:
            data = self.sysfs.read_head(rel, self.max_bytes)
        except OSError as exc:
            return {"error": errno_name(exc)}
        out: dict[str, Any] = {"value": data.decode("utf-8", "replace")}
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            out["base64"] = base64.b64encode(data).decode("ascii")
        # sysfs and procfs sizes say nothing (4096, 0); where the size is true it decides exactly
        out["truncated"] = len(data) == self.max_bytes and st.st_size != len(data)
        return out

    def _link(self, rel: str, mode: str, *, phase: int, level: int) -> None:
        try:
            target = os.readlink(self.sysfs.path(rel))
        except OSError as exc:
            self._record(rel, {"kind": "link", "mode": mode, "error": errno_name(exc)})
            return
        follow = self._follow_rule(rel, phase, level)
        real = self._target(rel, target, follow) if follow is not None else None
        self._record(rel, {"kind": "link", "mode": mode, "target": target, "followed": real is not None})
        if real is not None and follow is not None:
            self._queues[follow[0]].append((real, follow[1]))

    def _follow_rule(self, rel: str, phase: int, level: int) -> tuple[int, int] | None:
        """(phase, depth) a link's target is walked with, or None: the rules of probe_roots' doc."""
        name = posixpath.basename(rel)
        if name == "of_node":
            return _OF_NODE, 1
        # a class or bus directory is a list of links to devices; a device's own links (supplier,
        # firmware_node) lead elsewhere, often into a large tree
        in_list = posixpath.dirname(rel).startswith(_LIST_DIRS)
        if phase == _ROOT and (level == 0 or (level == 1 and in_list)):
            return _LINKED, self.max_depth
        if phase == _LINKED and level == 1 and name == "device":
            return _DEVICE, 1
        return None

    def _target(self, rel: str, target: str, follow: tuple[int, int]) -> str | None:
        """The real directory a followable link leads to inside the root, or None."""
        into = DT_LINK_INTO if follow[0] == _OF_NODE else FOLLOW_INTO
        try:
            real = self._resolve(_join_target(posixpath.dirname(rel), target))
            if real is None or not any(real.startswith(p) for p in into):
                return None
            return real if stat.S_ISDIR(os.lstat(self.sysfs.path(real)).st_mode) else None
        except OSError:
            return None

    def _resolve(self, rel: str) -> str | None:
        """``rel`` with every link in it resolved by name inside the root (each recorded), or None if
        it does not exist, leads into ``dev/`` or takes more than ``_MAX_HOPS`` links."""
        parts = [p for p in rel.split("/") if p]
        done: list[str] = []
        hops = 0
        while parts:
            cur = "/".join([*done, parts[0]])
            st = os.lstat(self.sysfs.path(cur))
            if not stat.S_ISLNK(st.st_mode):
                done.append(parts.pop(0))
                continue
            hops += 1
            if hops > _MAX_HOPS:
                return None
            target = os.readlink(self.sysfs.path(cur))
            self._record(cur, {"kind": "link", "mode": f"{stat.S_IMODE(st.st_mode):04o}", "target": target,
                               "followed": True})
            parts = [p for p in _join_target("/".join(done), target).split("/") if p] + parts[1:]
            done = []
        real = "/".join(done)
        return None if real == "dev" or real.startswith("dev/") else real


def _join_target(directory: str, target: str) -> str:
    """Where a link in ``directory`` points, relative to the root; ``..`` stops at the top as at ``/``."""
    joined = target.lstrip("/") if target.startswith("/") else posixpath.join(directory, target)
    parts: list[str] = []
    for part in joined.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return "/".join(parts)
