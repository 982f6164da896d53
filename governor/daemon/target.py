"""Opening the board a command works on: a catalogue name, ``auto``, or ``sim:NAME``.

This is composition, so it lives above the drivers and the simulator: it picks the root (the real
``/``, a fake tree, or a simulated board's tree), detects or checks the board, and opens the real
drivers on it. Every command that touches a board (status, serve, profile, evaluate) goes through
:func:`open_target`, so they all accept the same ``--board`` and ``--sysfs-root`` values.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from governor.core.board import SIM_PREFIX, BoardSpec, CatalogueError
from governor.drivers._sysfs import SysfsRoot, is_fake_tree
from governor.drivers.board import open_board
from governor.drivers.detect import DetectionError, detect_board
from governor.drivers.sources import SourceError

if TYPE_CHECKING:
    from governor.sim import SimBoard

__all__ = ["Target", "TargetError", "open_sysfs_root", "open_target"]


class TargetError(RuntimeError):
    """The board cannot be opened; the message says what to do."""


@dataclass
class Target:
    """An opened board: the drivers (``board``), its description and whether it is simulated."""

    spec: BoardSpec
    board: Any  # governor.drivers.board.Board, or the simulator's wrapper of it
    simulated: bool
    root: str
    sim: SimBoard | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.spec.name} (SIMULATED)" if self.simulated else self.spec.name

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()


def open_target(
    board: str = "auto",
    sysfs_root: str = "/",
    *,
    clock: str = "real",
    scenario: str | None = None,
    seed: int = 0,
    mode: str = "limits",
    sensors: str = "auto",
) -> Target:
    """Open ``board`` (catalogue name, ``auto`` or ``sim:NAME``) on ``sysfs_root``.

    ``sensors`` is ``[sensors] source`` (governor.drivers.sources); a simulated board reads its own tree."""
    board = board or "auto"
    try:
        if board.startswith(SIM_PREFIX):
            return _open_sim(board, clock=clock, scenario=scenario, seed=seed, mode=mode)
        return _open_real(board, sysfs_root, mode=mode, sensors=sensors)
    except (CatalogueError, DetectionError, SourceError) as exc:
        raise TargetError(str(exc)) from exc


def _open_sim(board: str, *, clock: str, scenario: str | None, seed: int, mode: str) -> Target:
    from governor.sim import open_sim_board  # only here: a board or the host never loads the simulator

    sim = open_sim_board(board, clock=clock, seed=seed, scenario=scenario)
    if clock == "real":
        sim.start()
    drivers = sim.open_drivers(mode=mode)
    target = Target(sim.catalogue_spec, drivers, True, str(sim.root), sim)
    target._closers.append(sim.close)
    return target


def _open_real(board: str, sysfs_root: str, *, mode: str, sensors: str = "auto") -> Target:
    root = Path(sysfs_root)
    if not root.is_dir():
        raise TargetError(f"--sysfs-root {sysfs_root} is not a directory; give / on a board or a fake tree")
    sysfs = _open_root(root)
    spec = detect_board(sysfs, requested=None if board == "auto" else board)
    drivers = open_board(spec, sysfs, clock=time.monotonic, mode=mode, sensors=sensors)  # type: ignore[arg-type]
    target = Target(spec, drivers, False, str(root))
    target._closers.append(drivers.close)  # stops a tegrastats child
    return target


def open_sysfs_root(sysfs_root: str) -> SysfsRoot:
    """The root a command reads without opening a board (``governor probe-report``): ``/``, a copy
    of one, or a fake tree with its kernel's semantics."""
    root = Path(sysfs_root)
    if not root.is_dir():
        raise TargetError(f"--sysfs-root {sysfs_root} is not a directory; give / on a board or a fake tree")
    return _open_root(root)


def _open_root(root: Path) -> SysfsRoot:
    """The drivers' own root on a real ``/`` (or a copy of one); the fakes' root on a fake tree."""
    if not is_fake_tree(root):
        return SysfsRoot(root)
    # The one import of the fakes outside tests and the simulator (pyproject.toml's import contract
    # allows exactly this line): --sysfs-root named a fake tree, whose kernel write semantics and
    # injected faults live in governor.testing. A real board never gets here, so never loads them.
    from governor.testing import open_root

    return open_root(root)
