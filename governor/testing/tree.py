"""Fake board trees: a directory that stands in for ``/`` of a catalogue board, idle, with faults on demand.

Theory of operation
-------------------
:func:`make_fake_tree` writes the files a board's kernel shows (the flavour its catalogue file
describes) with their real names, units and text formats, and a marker file with the rules that
give later writes kernel semantics (:class:`~governor.testing.root.FakeSysfsRoot`). The board is
idle: dynamic governors at the bottom of their table, limits wide open, sensors at idle readings.

:class:`FakeTree` is the test's handle: ``sysfs`` for driver code, ``set_file`` for the simulator
(kernel-side updates), ``snapshot_bytes`` for byte-exact restore checks, and fault injection
(``vanish``, ``freeze``, ``make_readonly``, ``deny``, ``fail_writes``) stored in the marker so
that every process using the tree sees them.

Variants (``variant=``) reproduce layouts drivers must also survive:

* ``""``: the catalogue's kernel flavour.
* ``"no-table"``: cpufreq without ``scaling_available_frequencies`` (intel_pstate-like drivers).
* ``"railgated"``: a Jetson GPU that is powered off: no devfreq node until ``railgate_enable`` = 0.
* ``"devfreq-numbered"``: devfreq nodes named ``devfreqN`` (the Odroid XU4's Mali on Hardkernel 4.14).
"""

from __future__ import annotations

import errno
import os
import random
import stat
from pathlib import Path
from typing import Any

from governor.core.board import BoardSpec
from governor.testing._build import BuildContext
from governor.testing._build_cpu import build_cpus
from governor.testing._build_dev import build_domains
from governor.testing._build_ident import build_identity
from governor.testing._build_mali import NUMBERED, number_devfreq_nodes
from governor.testing._build_sensors import build_power, build_thermal
from governor.testing._fs import READ_ONLY, TreeFiles
from governor.testing._marker import LOCK_NAME, MARKER_NAME, empty_state, save
from governor.testing.root import FakeSysfsRoot

__all__ = ["VARIANTS", "FakeTree", "make_fake_tree"]

VARIANTS = {
    "": "the catalogue's kernel flavour",
    "no-table": "cpufreq policies without scaling_available_frequencies",
    "railgated": "Jetson GPU rail-gated: devfreq appears after railgate_enable = 0",
    NUMBERED: "devfreq nodes named devfreqN, as Hardkernel 4.14 names the XU4's Mali (devfreq/devfreq0)",
}
_OWN_FILES = (MARKER_NAME, LOCK_NAME)


def make_fake_tree(
    spec: BoardSpec, directory: str | os.PathLike[str], *, hwmon_base: int = 0, seed: int = 0, variant: str = ""
) -> FakeTree:
    """Build the idle tree of ``spec`` in ``directory`` (created; must be empty if it exists)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown fake-tree variant {variant!r}; known: {sorted(VARIANTS)}")
    if variant == "railgated" and not any(d.kind == "gpu" and d.load_path for d in spec.domains):
        raise ValueError(f"variant 'railgated' needs a Jetson GPU with a load file; {spec.name} has none")
    if variant == NUMBERED and not any(d.driver == "devfreq" for d in spec.domains):
        raise ValueError(f"variant {NUMBERED!r} needs a devfreq domain; {spec.name} has none")
    root = Path(directory)
    if root.exists() and any(root.iterdir()):
        raise ValueError(f"{root} is not empty; a fake tree needs a directory of its own")
    root.mkdir(parents=True, exist_ok=True)
    state = empty_state(spec.model_dump(mode="json"), variant=variant, seed=seed, hwmon_base=hwmon_base)
    ctx = BuildContext(TreeFiles(root), spec, state, random.Random(seed), variant, hwmon_base)
    for build in (build_identity, build_cpus, build_domains, number_devfreq_nodes, build_power, build_thermal):
        build(ctx)
    save(root, state)
    return FakeTree(root)


class FakeTree:
    """A built fake tree (see module doc). ``FakeTree(directory)`` reopens one, e.g. in another process."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.sysfs = FakeSysfsRoot(directory)
        self.root: Path = self.sysfs.root
        self.spec: BoardSpec = self.sysfs.spec

    def __repr__(self) -> str:
        return f"FakeTree({self.spec.name!r}, {str(self.root)!r})"

    def path(self, rel: str) -> Path:
        return self.sysfs.path(rel)

    def snapshot_bytes(self) -> dict[str, bytes]:
        """Every regular file below the root (relative path -> bytes), the tree's own files excepted."""
        out: dict[str, bytes] = {}
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(dirpath, name)
                rel = path.relative_to(self.root).as_posix()
                if rel in _OWN_FILES or not stat.S_ISREG(path.lstat().st_mode):
                    continue
                out[rel] = path.read_bytes()
        return out

    def set_file(self, rel: str, text: str | bytes, *, newline: bool = True) -> bool:
        """Kernel-side update (see :meth:`FakeSysfsRoot.set_file`); False if frozen or vanished."""
        return self.sysfs.set_file(rel, text, newline=newline)

    # -- faults -----------------------------------------------------------------------------
    def vanish(self, rel_or_glob: str) -> list[str]:
        """Remove matching nodes as a driver unload would: a symlink takes its target with it, and
        links left dangling anywhere under ``sys/`` go too. Returns the removed real paths."""
        removed: list[str] = []
        for rel in self.sysfs.glob(rel_or_glob) or ([rel_or_glob] if self.sysfs.exists(rel_or_glob) else []):
            real = self.sysfs.canonical(rel)
            self.sysfs.files.remove(rel)
            self.sysfs.files.remove(real)
            removed.append(real)
        self._drop_dangling_links()

        def record(state: dict[str, Any]) -> None:
            state["faults"]["vanished"] += [rel_or_glob, *removed]

        self.sysfs.update_state(record)
        return removed

    def _drop_dangling_links(self) -> None:
        for dirpath, dirs, names in os.walk(self.root / "sys"):
            for name in [*dirs, *names]:
                path = Path(dirpath, name)
                if path.is_symlink() and not path.exists():
                    path.unlink()

    def _files_of(self, rel: str) -> list[str]:
        real = self.sysfs.canonical(rel)
        path = self.sysfs.files.abs(real)
        if path.is_dir():
            return sorted(p.relative_to(self.root).as_posix() for p in path.rglob("*") if p.is_file())
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, f"{rel} does not exist in the fake tree")
        return [real]

    def freeze(self, rel: str) -> None:
        """Writes to ``rel`` (every file below it, for a directory) succeed but change nothing."""
        files = self._files_of(rel)
        self.sysfs.update_state(
            lambda s: s["faults"]["frozen"].extend(f for f in files if f not in s["faults"]["frozen"])
        )

    def make_readonly(self, rel: str) -> None:
        """Writes to ``rel`` (or the files below it) raise PermissionError, like a 0444 attribute."""
        for real in self._files_of(rel):
            os.chmod(self.sysfs.files.abs(real), READ_ONLY)

    def deny(self, rel: str, *, reads: bool = False) -> None:
        """Writes (and with ``reads``, reads) of ``rel`` raise PermissionError (EACCES): not root."""
        files = self._files_of(rel)
        self.sysfs.update_state(lambda s: s["faults"]["denied"].update({f: reads for f in files}))

    def fail_writes(self, rel: str, errno_code: int) -> None:
        """Writes to ``rel`` fail with ``OSError(errno_code)`` (EBUSY, EIO, ...)."""
        files = self._files_of(rel)
        self.sysfs.update_state(lambda s: s["faults"]["failing"].update({f: errno_code for f in files}))

    def clear_faults(self) -> None:
        """Forget frozen, denied and failing files (vanished nodes stay gone; modes stay as set)."""

        def clear(state: dict[str, Any]) -> None:
            state["faults"].update(frozen=[], denied={}, failing={})

        self.sysfs.update_state(clear)
