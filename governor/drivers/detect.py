"""Which catalogue board is this machine? Decided from the device tree.

Theory of operation
-------------------
``proc/device-tree/compatible`` lists NUL-separated strings from the most specific (the carrier
board) to the least (the SoC); ``proc/device-tree/model`` is a human-readable name. Each catalogue
board says what it answers to (``[identify]``: compatible strings, model substrings). A board is a
candidate when any of its criteria match; among candidates the most specific wins, ranked by
(how many kinds of criteria matched, how early in the compatible list its best string sits,
the longest matching model substring). A machine without a device tree is a ``host``.

An explicit request is checked, not trusted blindly: asking for a board that does not match the
device tree is an error listing what was seen and the known boards (the ``host`` board needs no
match, it only assumes generic Linux interfaces).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from governor.core.board import BoardSpec
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.catalogue import CatalogueError, board_names, load_board

__all__ = ["COMPATIBLE", "MODEL", "DetectionError", "Machine", "detect_board", "read_machine", "score"]

COMPATIBLE = "proc/device-tree/compatible"
MODEL = "proc/device-tree/model"


class DetectionError(CatalogueError):
    """The requested board does not match this machine; the message lists what to choose from."""


@dataclass(frozen=True)
class Machine:
    """What the device tree says (empty for a machine without one)."""

    compatible: tuple[str, ...] = ()
    model: str = ""

    @property
    def has_device_tree(self) -> bool:
        return bool(self.compatible or self.model)

    def describe(self) -> str:
        if not self.has_device_tree:
            return "no device tree"
        return f"compatible {list(self.compatible)}, model {self.model!r}"


def _read_text(sysfs: SysfsRoot, rel: str) -> str:
    try:
        return sysfs.read_bytes(rel).decode("utf-8", "replace")
    except SysfsError:
        return ""


def read_machine(sysfs: SysfsRoot) -> Machine:
    compatible = tuple(s for s in _read_text(sysfs, COMPATIBLE).split("\x00") if s.strip())
    return Machine(compatible=compatible, model=_read_text(sysfs, MODEL).strip("\x00\n "))


def score(spec: BoardSpec, machine: Machine) -> tuple[int, int, int] | None:
    """How specifically ``spec`` matches ``machine`` (higher is better), or None when it does not."""
    ident = spec.identify
    positions = [machine.compatible.index(c) for c in ident.compatible if c in machine.compatible]
    models = [len(m) for m in ident.model if m and m.lower() in machine.model.lower()]
    if not positions and not models:
        return None
    kinds = bool(positions) + bool(models)
    earliest = min(positions) if positions else len(machine.compatible)
    return kinds, -earliest, max(models, default=0)


def _best(specs: Sequence[BoardSpec], machine: Machine) -> BoardSpec | None:
    ranked = [(s, spec) for spec in specs if spec.board.family != "host" and (s := score(spec, machine))]
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else None


def _host(specs: Sequence[BoardSpec]) -> BoardSpec:
    hosts = [s for s in specs if s.board.family == "host"]
    if not hosts:
        raise DetectionError("the catalogue has no host board to fall back on")
    return hosts[0]


def detect_board(
    sysfs: SysfsRoot, *, requested: str | None = None, specs: Sequence[BoardSpec] | None = None
) -> BoardSpec:
    """The catalogue board for the machine under ``sysfs`` (``requested`` is checked against it).

    Without a request: the best device-tree match, else the host board. ``specs`` defaults to the
    whole catalogue.
    """
    specs = list(specs) if specs is not None else [load_board(n) for n in board_names()]
    machine = read_machine(sysfs)
    if requested:
        return _check_request(requested, specs, machine)
    return _best(specs, machine) or _host(specs)


def _check_request(requested: str, specs: Sequence[BoardSpec], machine: Machine) -> BoardSpec:
    known = ", ".join(s.name for s in specs)
    chosen = next((s for s in specs if s.name == requested), None)
    if chosen is None:
        raise DetectionError(f"unknown board {requested!r}; known boards: {known} (see `governor boards`)")
    if chosen.board.family == "host" or score(chosen, machine) is not None:
        return chosen
    best = _best(specs, machine)
    guess = f"; this looks like {best.name}" if best else ""
    raise DetectionError(
        f"board {requested!r} does not match this machine ({machine.describe()}){guess}; "
        f"known boards: {known}. Pick one of them, or 'host' for generic Linux interfaces"
    )
