"""The fake kernel: what happens when user space writes a file of a fake tree.

Theory of operation
-------------------
A write names a real file (symlinks already resolved). Its rule comes from the marker: a rule for
that exact file (``cpuK/online``, an INA231 ``enable``), else for its directory (a cpufreq policy,
a devfreq node, the EMC override) or the directory above (devfreq ``userspace/set_freq``). The
rule's handler validates the text the way the kernel's store function does, raises
:class:`KernelReject` with the kernel's errno when it refuses, and otherwise updates the file and
everything the kernel derives from it (the current frequency after a limit or governor change,
the online lists after a hotplug). A file without a rule simply stores the value.

The kernel side never writes a frozen file and never recreates a vanished one; it writes every
file atomically with its mode kept (:class:`~governor.testing._fs.TreeFiles`).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from posixpath import dirname, relpath
from typing import Any

from governor.core.board import BoardSpec
from governor.testing._formats import snap_down, snap_up
from governor.testing._fs import READ_ONLY, TreeFiles

__all__ = ["Handler", "KernelIO", "KernelReject", "limit_pair", "reject", "resolve_rule"]


class KernelReject(OSError):
    """The fake kernel refused a value; ``errno`` is what the real store function returns."""


def reject(code: int, why: str) -> KernelReject:
    return KernelReject(code, why)


class KernelIO:
    """Kernel-side file access for one write: honours frozen files, tracks marker changes."""

    def __init__(self, files: TreeFiles, state: dict[str, Any]) -> None:
        self.files = files
        self.state = state
        self.frozen = set(state["faults"]["frozen"])
        self.dirty = False
        self._spec: BoardSpec | None = None

    @property
    def spec(self) -> BoardSpec:
        if self._spec is None:
            self._spec = BoardSpec.model_validate(self.state["spec"])
        return self._spec

    def exists(self, rel: str) -> bool:
        return self.files.exists(rel)

    def read(self, rel: str) -> str:
        return self.files.read(rel).strip()

    def read_int(self, rel: str) -> int:
        return int(self.read(rel))

    def put(self, rel: str, value: object) -> None:
        """Update an existing file as its show function would print ``value`` (adds the newline)."""
        if rel in self.frozen or not self.files.exists(rel):
            return
        text = value if isinstance(value, str) and value.endswith("\n") else f"{value}\n"
        if self.files.abs(rel).read_bytes() != text.encode():
            self.files.write(rel, text)

    def create(self, rel: str, value: object, mode: int = READ_ONLY) -> None:
        self.files.write(rel, f"{value}\n", mode)

    def remove(self, rel: str) -> None:
        self.files.remove(rel)


Handler = Callable[[KernelIO, dict[str, Any], str, str, str], bool]


def resolve_rule(state: dict[str, Any], real: str) -> tuple[dict[str, Any], str, str] | None:
    """(rule, node, leaf) for a real file: its own rule, else its directory's or the one above."""
    if real in state["files"]:
        return state["files"][real], real, real.rsplit("/", 1)[-1]
    parent = dirname(real)
    for node in (parent, dirname(parent)):
        if node in state["nodes"]:
            return state["nodes"][node], node, relpath(real, node)
    return None


def parse_uint(text: str) -> int:
    try:
        value = int(text.strip(), 10)
    except ValueError:
        raise reject(errno.EINVAL, f"{text.strip()!r} is not a number") from None
    if value < 0:
        raise reject(errno.EINVAL, f"{value} is negative")
    return value


def limit_pair(table: list[int], rule: str, cur: tuple[int, int], value: int, *, is_min: bool) -> tuple[int, int]:
    """New (min, max) after writing ``value`` to one limit, as cpufreq/devfreq would leave them.

    ``rule`` "einval": a min above the current max, or a max below the current min, is refused
    (Linux < 5.3, compared before clamping). "clamp": the conflicting bound follows, max wins.
    Values are clamped into the table's range and snapped: a min up, a max down.
    """
    lo, hi = cur
    if rule == "einval":
        if is_min and value > hi:
            raise reject(errno.EINVAL, f"min {value} is above the current max {hi}")
        if not is_min and value < lo:
            raise reject(errno.EINVAL, f"max {value} is below the current min {lo}")
    bounded = min(max(value, table[0]), table[-1])
    if is_min:
        return min(snap_up(table, bounded), hi), hi
    new_max = snap_down(table, bounded)
    return min(lo, new_max), new_max
