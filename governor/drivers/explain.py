"""Where each part of a probed board was found, in what format, and what else was tried.

``governor status --explain`` prints this: the first thing to send when something is wrong on a
board. It is read from what the drivers already hold (a domain's ``dir``, a sensor's ``dir``, the
thermal zones found, a load reader's ``found_at``/``tried``) and from the catalogue's candidate
paths; nothing is written and nothing is sampled.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from governor.drivers.board import Board
from governor.drivers.thermal import ZONE_GLOBS

__all__ = ["Found", "explain", "explain_json"]


@dataclass(frozen=True)
class Found:
    """One part: ``found_at`` ("" when not found), its ``format`` (driver, unit), the candidates tried."""

    part: str
    kind: str
    found_at: str
    format: str
    tried: tuple[str, ...]
    probe: str


def _probe(board: Board, name: str) -> str:
    probe = board.probes.get(name)
    return f"{probe.result.value}: {probe.detail}" if probe else board.unavailable.get(name, "not probed")


def _domains(board: Board) -> list[Found]:
    specs = {d.name: d for d in board.spec.domains}
    names = list(dict.fromkeys([*specs, *board.domains, *(n for n in board.probes if n.startswith("cpu"))]))
    out = []
    for name in names:
        domain = board.domains.get(name)
        spec = specs.get(name) or getattr(domain, "spec", None)
        if spec is None:
            continue
        out.append(Found(name, f"domain/{spec.kind}", getattr(domain, "dir", "") or "",
                         f"{spec.driver}, {spec.unit}", tuple(spec.paths), _probe(board, name)))
    return out


def _power(board: Board) -> list[Found]:
    found = {getattr(s, "spec", None): s for s in board.power}
    out = []
    for device in board.spec.power:
        sensor = found.get(device)
        rails = ", ".join(c.name for c in device.channels)
        name = getattr(sensor, "name", f"{device.driver}:{device.path.rsplit('/', 1)[-1]}")
        out.append(Found(name, f"rails {rails}", getattr(sensor, "dir", "") or "", device.driver, (device.path,),
                         _probe(board, name)))
    return out


def _zones(board: Board) -> list[Found]:
    out = []
    for sensor in board.thermal:
        zones: dict[str, str] = getattr(sensor, "_zones", {})
        probe = _probe(board, getattr(sensor, "name", "thermal"))
        out += [Found(kind, "zone", where, "m°C", ZONE_GLOBS, probe) for kind, where in zones.items()]
    if not board.thermal:
        out.append(Found("thermal", "zone", "", "m°C", ZONE_GLOBS, _probe(board, "thermal")))
    return out


def _loads(board: Board) -> list[Found]:
    out = []
    for name, probe in board.probes.items():
        if not name.startswith(("cpu-load", "gpu-load")):
            continue
        sensor = next((s for s in board.load if getattr(s, "name", "") == name), None)
        kind = type(sensor).__name__ if sensor is not None else "load"
        fmt = {"MaliLoad": "percent", "GpuLoad": "per-mille", "CpuLoad": "jiffies"}.get(kind, "")
        tried = tuple(getattr(sensor, "tried", ("proc/stat",) if name == "cpu-load" else ()))
        where = getattr(sensor, "found_at", "proc/stat" if name == "cpu-load" and sensor is not None else "")
        out.append(Found(name, "load", where, fmt, tried, f"{probe.result.value}: {probe.detail}"))
    return out


def _source(board: Board) -> list[Found]:
    """The sensor source merged over the sysfs sensors (governor.drivers.sources): sysfs, jtop or tegrastats."""
    choice = getattr(board, "source_choice", None)
    if choice is None:
        return []
    fmt = {"jtop": "jetson-stats, mW/°C/%", "tegrastats": "tegrastats lines, mW/°C/%"}.get(choice.name, "sysfs")
    return [Found(f"sensors:{choice.name}", "source", choice.where or "sysfs", fmt, choice.tried,
                  choice.note or "-")]


def explain(board: Board) -> list[Found]:
    """Every domain, rail sensor, thermal zone and load reader of ``board``, found or not, and the sensor source."""
    return [*_domains(board), *_power(board), *_zones(board), *_loads(board), *_source(board)]


def explain_json(board: Board) -> list[dict[str, Any]]:
    return [asdict(f) | {"tried": list(f.tried)} for f in explain(board)]
