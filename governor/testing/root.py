"""FakeSysfsRoot: a SysfsRoot whose writes behave as the board's kernel would.

Everything the semantics need lives in the tree's marker file (:mod:`._marker`), not in this
object, so a second process that opens the same directory with :func:`open_root` (a daemon under
test, the simulator) gets identical behaviour and sees faults injected after it started.

Order of checks on a write, as a real write meets them: an injected fault (``deny`` ->
PermissionError, ``fail_writes`` -> that errno), a missing file, a frozen file (accepted, nothing
changes), the file's mode (read-only -> PermissionError: we emulate it because tests run as root),
then the kernel rule. Errors come out as the same :class:`SysfsError` subclasses, with the same
advice, as on a real board.
"""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Callable
from typing import Any

from governor.core.board import BoardSpec
from governor.drivers._sysfs import SysfsRejected, SysfsRoot, read_denied
from governor.testing._fs import READ_ONLY, TreeFiles
from governor.testing._kernel import Handler, KernelIO, resolve_rule
from governor.testing._kernel_cpu import cpu_online_write, cpufreq_write
from governor.testing._kernel_dev import HANDLERS as DEVICE_HANDLERS
from governor.testing._marker import MarkerCache, is_fake_root, locked, save

__all__ = ["FakeSysfsRoot", "open_root"]

HANDLERS: dict[str, Handler] = {"cpufreq": cpufreq_write, "cpu-online": cpu_online_write, **DEVICE_HANDLERS}


class FakeSysfsRoot(SysfsRoot):
    """A fake tree's root with kernel write semantics; construct it with :func:`open_root`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        if not is_fake_root(self.root):
            raise ValueError(f"{self.root} is not a fake tree (no marker file); build one with make_fake_tree()")
        self.files = TreeFiles(self.root)
        self._marker = MarkerCache(self.root)
        self._spec: BoardSpec | None = None

    @property
    def spec(self) -> BoardSpec:
        if self._spec is None:
            self._spec = BoardSpec.model_validate(self._marker.get()["spec"])
        return self._spec

    @property
    def state(self) -> dict[str, Any]:
        """The marker's current content (read-only view; change it with :meth:`update_state`)."""
        return self._marker.get()

    def canonical(self, rel: str) -> str:
        """``rel`` with symlinks resolved, relative to the root (faults and rules use this form)."""
        return self.realpath(rel.lstrip("/"))

    def update_state(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to the marker under the tree lock and save it."""
        with locked(self.root):
            state = self._marker.get()
            change(state)
            save(self.root, state)

    # -- reads ------------------------------------------------------------------------------
    def read_bytes(self, rel: str) -> bytes:
        code = self._read_refusal(rel)
        if code in (errno.EACCES, errno.EPERM):
            raise read_denied(rel)
        if code:  # the board's own behaviour, not a fault: a powered-off JetPack 6 thermal zone (EAGAIN)
            raise SysfsRejected(code, f"reading {rel} failed: {os.strerror(code)}")
        return super().read_bytes(rel)

    def read_head(self, rel: str, max_bytes: int) -> bytes:
        code = self._read_refusal(rel)
        if code:  # untranslated, as the real root's read_head raises it (OSError picks PermissionError etc.)
            raise OSError(code, os.strerror(code), str(self.path(rel)))
        return super().read_head(rel, max_bytes)

    def _read_refusal(self, rel: str) -> int:
        """The errno the board's kernel fails a read of ``rel`` with (an injected denial: EACCES), or 0."""
        state, real = self._marker.get(), self.canonical(rel)
        if state["faults"]["denied"].get(real):
            return errno.EACCES
        return int(state.get("read_errors", {}).get(real) or 0)

    # -- writes -----------------------------------------------------------------------------
    def _write_raw(self, rel: str, text: str) -> None:
        with locked(self.root):
            self._kernel_write(self.canonical(rel), text)

    def _kernel_write(self, real: str, text: str) -> None:
        state = self._marker.get()
        faults = state["faults"]
        if real in faults["denied"]:
            raise PermissionError(errno.EACCES, "denied (injected fault)")
        if real in faults["failing"]:
            code = faults["failing"][real]
            raise OSError(code, os.strerror(code))
        if not self.files.is_file(real):
            raise FileNotFoundError(errno.ENOENT, real)
        if real in faults["frozen"]:
            return
        if not self.files.mode(real) & 0o200:
            raise PermissionError(errno.EACCES, "read-only attribute")
        kernel = KernelIO(self.files, state)
        found = resolve_rule(state, real)
        handled = found is not None and HANDLERS[found[0]["kind"]](kernel, found[0], found[1], found[2], text)
        if not handled:
            kernel.put(real, text.strip())
        if kernel.dirty:
            save(self.root, state)

    # -- kernel side (the simulator publishes sensor values this way) ------------------------
    def set_file(self, rel: str, text: str | bytes, *, newline: bool = True) -> bool:
        """Write a file as the kernel would, bypassing write semantics and modes.

        Frozen and vanished files are left alone (returns False), so an injected fault outlives
        the simulator's updates. A missing file is created read-only. ``newline`` appends the
        kernel's trailing newline to text that lacks it.
        """
        if isinstance(text, str):
            text = text if not newline or text.endswith("\n") else text + "\n"
        with locked(self.root):
            real = self.canonical(rel)
            faults = self._marker.get()["faults"]
            if real in faults["frozen"] or _vanished(faults["vanished"], rel, real):
                return False
            mode = None if self.files.exists(real) else READ_ONLY
            self.files.write(real, text, mode)
        return True


def _vanished(removed: list[str], rel: str, real: str) -> bool:
    return any(fnmatch.fnmatchcase(rel, gone) or real == gone or real.startswith(gone + "/") for gone in removed)


def open_root(path: str | os.PathLike[str]) -> SysfsRoot:
    """A :class:`FakeSysfsRoot` if ``path`` is a fake tree (marker file at its top), else a plain root."""
    return FakeSysfsRoot(path) if is_fake_root(path) else SysfsRoot(path)
