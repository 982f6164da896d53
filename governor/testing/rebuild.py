"""A tree on disk from a ``governor probe-report`` document: a real board's layout as a test fixture.

The report (:mod:`governor.drivers.probe_report`) holds each node's path, mode and kind, each file's
first bytes and each link's target; :func:`tree_from_probe_report` writes them back: directories,
files with their recorded bytes and modes, symlinks with their targets (an absolute target, as
``/proc/device-tree`` has on a board, is rewritten relative so that the tree stays inside itself).
A file whose value was cut at ``max_bytes`` holds only those bytes; one whose read failed is empty.

With ``spec`` (the catalogue board the report came from) the tree is also a fake root
(:func:`~governor.testing.open_root`): its marker replays each recorded read error (EAGAIN of a
powered-off zone, EACCES of a write-only attribute), so drivers meet the board's refusals too. Writes
to it have no kernel rule: a value written is stored as given. Without ``spec`` it is a plain
directory, and the read errors are returned instead.

A report is a file from a stranger: every path must stay below ``root_dir`` and below no link.
"""

from __future__ import annotations

import base64
import errno
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from governor.core.board import BoardSpec
from governor.drivers.probe_report import FORMAT, VERSION
from governor.testing._marker import LOCK_NAME, MARKER_NAME, empty_state, save

__all__ = ["RebuiltTree", "tree_from_probe_report"]

_KINDS = ("dir", "file", "link")


@dataclass(frozen=True)
class RebuiltTree:
    """What :func:`tree_from_probe_report` made: the root, and what the files cannot say themselves."""

    root: Path
    read_errors: Mapping[str, str] = field(default_factory=dict)  # real path -> errno name (EAGAIN...)
    truncated: tuple[str, ...] = ()  # files holding only their first max_bytes bytes
    fake: bool = False  # a marker replays read_errors (spec was given)


def tree_from_probe_report(
    report: Mapping[str, Any], root_dir: str | os.PathLike[str], *, spec: BoardSpec | None = None
) -> RebuiltTree:
    """Write the tree ``report`` describes into ``root_dir`` (created; must be empty if it exists)."""
    if report.get("format") != FORMAT or report.get("version") != VERSION:
        raise ValueError(f"not a {FORMAT} version {VERSION} document "
                         f"(format {report.get('format')!r}, version {report.get('version')!r})")
    root = Path(root_dir)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty; a rebuilt tree needs a directory of its own")
    root.mkdir(parents=True, exist_ok=True)
    entries = sorted(report.get("entries", []), key=lambda e: str(e.get("path", "")))
    dir_modes: list[tuple[str, int]] = []
    read_errors: dict[str, str] = {}
    truncated: list[str] = []
    for entry in entries:
        rel, kind, mode = _checked(entry)
        path = root / rel
        _refuse_links_above(root, rel)
        if kind == "dir":
            path.mkdir(parents=True, exist_ok=True)
            dir_modes.append((rel, mode))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(path):
            raise ValueError(f"probe report: {rel!r} is listed twice")
        if kind == "link":
            os.symlink(_link_target(rel, str(entry.get("target", ""))), path)
            continue
        _write(path, _payload(entry), mode)
        if entry.get("error"):
            read_errors[rel] = str(entry["error"])
        if entry.get("truncated"):
            truncated.append(rel)
    # deepest first, after their contents exist: a 0500 directory must not stop its own files
    for rel, mode in sorted(dir_modes, key=lambda d: d[0].count("/"), reverse=True):
        os.chmod(root / rel, mode)
    if spec is not None:
        state = empty_state(spec.model_dump(mode="json"), variant="", seed=0, hwmon_base=0)
        state["read_errors"] = {rel: getattr(errno, name, errno.EIO) for rel, name in read_errors.items()}
        save(root, state)
    return RebuiltTree(root, read_errors, tuple(truncated), spec is not None)


def _checked(entry: Mapping[str, Any]) -> tuple[str, str, int]:
    rel, kind = str(entry.get("path", "")), entry.get("kind")
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"probe report: path {rel!r} is not a plain relative path")
    if rel in (MARKER_NAME, LOCK_NAME):
        raise ValueError(f"probe report: {rel!r} is the fake tree's own file")
    if kind not in _KINDS:
        raise ValueError(f"probe report: {rel!r} has kind {kind!r}, not one of {_KINDS}")
    try:
        mode = int(str(entry.get("mode", "0644")), 8)
    except ValueError as exc:
        raise ValueError(f"probe report: {rel!r} has mode {entry.get('mode')!r}, not octal") from exc
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"probe report: {rel!r} has mode {entry.get('mode')!r}")
    return rel, str(kind), mode


def _refuse_links_above(root: Path, rel: str) -> None:
    parent = root
    for part in rel.split("/")[:-1]:
        parent = parent / part
        if parent.is_symlink():
            raise ValueError(f"probe report: {rel!r} lies below the link {parent.relative_to(root).as_posix()!r}")


def _link_target(rel: str, target: str) -> str:
    """The target as recorded, unless it is absolute or climbs above the top: then the same place,
    relative (``..`` at the top stays at the top, as at ``/``)."""
    if not target:
        raise ValueError(f"probe report: link {rel!r} has no target")
    directory = posixpath.dirname(rel)
    depth = len(directory.split("/")) if directory else 0
    climbs = 0
    for part in target.split("/"):
        climbs = climbs + 1 if part == ".." else climbs
    if not target.startswith("/") and climbs <= depth:
        return target
    joined = target.lstrip("/") if target.startswith("/") else posixpath.join(directory, target)
    parts: list[str] = []
    for part in joined.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part and part != ".":
            parts.append(part)
    return posixpath.relpath("/".join(parts) or ".", directory or ".")


def _payload(entry: Mapping[str, Any]) -> bytes:
    if entry.get("base64"):
        return base64.b64decode(str(entry["base64"]), validate=True)
    return str(entry.get("value", "")).encode("utf-8")


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
