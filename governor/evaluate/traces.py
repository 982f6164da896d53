"""Request traces: when requests arrive, what each asks for, and what else loads the board meanwhile.

Theory of operation
-------------------
A trace file is JSON (``format: "governor-trace"``, ``version: 1``)::

    {"format": "governor-trace", "version": 1, "name": "steady", "description": "...",
     "time_unit": "ref",
     "requests": [[0.0, 10.0, "G"], [10.3, 10.0, "G-1"], ...],
     "load": [{"start": 2000, "end": 4000,
               "corunners": [{"unit": "@inference", "share": 0.5, "stall_ratio": 0.2}]}]}

Each request row is ``[arrival, deadline, floor]``: arrival time since the start of the trace,
relative deadline, and an accuracy floor: ``null`` (none), ``"G"`` (the full network's accuracy),
``"G-n"``, ``"kN"`` (the accuracy of the N-group sub-network, clipped to 1..G) or a number in
(0, 1] (an absolute top-1 fraction). ``time_unit`` is ``"ms"`` (times and deadlines in
milliseconds) or ``"ref"``: multiples of the *reference latency*, the fastest full-network
latency of the model on the board at top clocks on an idle board (from the profile). A ``ref``
trace therefore loads every board and model alike (the same duty cycle and deadline slack), which
is how the shipped traces are written.

``load`` phases put simulated co-runners (:class:`governor.sim.CoRunner`) on compute units: a unit
name of the board, ``"@inference"`` (the unit the baselines run the network on), or ``"@cpu"`` /
``"@gpu"`` (every unit of that kind). :func:`resolve` turns a trace into absolute seconds, ms,
accuracy fractions and a simulator :class:`~governor.sim.Scenario` for one board and model.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governor.sim import CoRunner, Phase, Scenario

__all__ = [
    "Arrival", "CoRunnerSpec", "LoadPhase", "ResolvedTrace", "Trace", "TraceError", "TraceRequest",
    "dump_trace", "load_trace", "parse_trace", "resolve", "save_trace",
]

TRACE_FORMAT = "governor-trace"
TRACE_VERSION = 1
TIME_UNITS = ("ms", "ref")
_FLOOR = re.compile(r"^(G(?:-(\d+))?|k(\d+))$")


class TraceError(ValueError):
    """A trace file is unusable; the message names the file, the place and what to change."""


@dataclass(frozen=True)
class TraceRequest:
    """One request: arrival and relative deadline in trace units, and its accuracy floor (see module doc)."""

    t: float
    deadline: float
    floor: str | float | None = None


@dataclass(frozen=True)
class CoRunnerSpec:
    """A co-runner on a unit selector (name, ``@inference``, ``@cpu``, ``@gpu``); share of the unit 0..1."""

    unit: str
    share: float
    stall_ratio: float = 0.1


@dataclass(frozen=True)
class LoadPhase:
    """Co-runners active from ``start`` to ``end`` (trace units)."""

    start: float
    end: float
    corunners: tuple[CoRunnerSpec, ...] = ()


@dataclass(frozen=True)
class Trace:
    name: str
    time_unit: str
    requests: tuple[TraceRequest, ...]
    load: tuple[LoadPhase, ...] = ()
    description: str = ""

    @property
    def duration(self) -> float:
        """Last arrival plus its deadline, or the end of the last load phase (trace units)."""
        ends = [r.t + r.deadline for r in self.requests] + [p.end for p in self.load]
        return max(ends, default=0.0)


@dataclass(frozen=True)
class Arrival:
    """A resolved request: arrival (s, board clock), deadline (ms) and accuracy floor (fraction or None)."""

    index: int
    t_s: float
    deadline_ms: float
    min_accuracy: float | None


@dataclass(frozen=True)
class ResolvedTrace:
    """A trace on one board and model: absolute times, the co-runner scenario and where it ends (s)."""

    name: str
    arrivals: tuple[Arrival, ...]
    scenario: Scenario
    end_s: float
    ms_per_unit: float
    inference_unit: str


# -- reading and writing --------------------------------------------------------------------------
def load_trace(path: str | Path) -> Trace:
    """Read and validate a trace file; raises :class:`TraceError` with what to fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"cannot read trace {path}: {exc.strerror or exc}") from exc
    return parse_trace(text, str(path))


def parse_trace(text: str, where: str = "trace") -> Trace:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{where} is not valid JSON ({exc}); fix the file or regenerate it") from exc
    if not isinstance(raw, dict) or raw.get("format") != TRACE_FORMAT:
        raise TraceError(f"{where} is not a trace (needs \"format\": \"{TRACE_FORMAT}\")")
    if raw.get("version") != TRACE_VERSION:
        raise TraceError(f"{where}: trace version {raw.get('version')!r} is not supported (this reads {TRACE_VERSION})")
    unit = raw.get("time_unit", "ms")
    if unit not in TIME_UNITS:
        raise TraceError(f"{where}: time_unit {unit!r} must be one of {list(TIME_UNITS)}")
    rows = raw.get("requests")
    if not isinstance(rows, list) or not rows:
        raise TraceError(f"{where}: \"requests\" must be a non-empty list of [arrival, deadline, floor] rows")
    requests = tuple(_request(row, f"{where}: requests[{i}]") for i, row in enumerate(rows))
    if any(b.t < a.t for a, b in itertools.pairwise(requests)):
        raise TraceError(f"{where}: request arrivals must be in non-decreasing time order")
    load = tuple(_phase(p, f"{where}: load[{i}]") for i, p in enumerate(raw.get("load") or []))
    return Trace(str(raw.get("name") or Path(where).stem), unit, requests, load, str(raw.get("description", "")))


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) == float("inf"):
        raise TraceError(f"{what} must be a finite number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise TraceError(f"{what} must be {'positive' if positive else 'non-negative'}, not {value!r}")
    return float(value)


def _request(row: Any, where: str) -> TraceRequest:
    if not isinstance(row, list) or len(row) not in (2, 3):
        raise TraceError(f"{where} must be [arrival, deadline] or [arrival, deadline, floor], not {row!r}")
    floor = row[2] if len(row) == 3 else None
    if isinstance(floor, str) and not _FLOOR.match(floor):
        raise TraceError(f"{where}: floor {floor!r} must be null, \"G\", \"G-n\", \"kN\" or a fraction in (0, 1]")
    if floor is not None and not isinstance(floor, str):
        share = _number(floor, f"{where}: floor")
        if not 0 < share <= 1:
            raise TraceError(f"{where}: an absolute accuracy floor must be in (0, 1], not {floor!r}")
        floor = share
    return TraceRequest(_number(row[0], f"{where}: arrival"), _number(row[1], f"{where}: deadline", positive=True),
                        floor)


def _phase(raw: Any, where: str) -> LoadPhase:
    if not isinstance(raw, dict):
        raise TraceError(f"{where} must be an object with start, end and corunners")
    start, end = _number(raw.get("start"), f"{where}: start"), _number(raw.get("end"), f"{where}: end")
    if end <= start:
        raise TraceError(f"{where}: end ({end}) must be after start ({start})")
    runners = []
    for j, c in enumerate(raw.get("corunners") or []):
        if not isinstance(c, dict) or not isinstance(c.get("unit"), str):
            raise TraceError(f"{where}: corunners[{j}] needs a \"unit\" (a unit name, @inference, @cpu or @gpu)")
        share = _number(c.get("share"), f"{where}: corunners[{j}].share")
        if share > 1:
            raise TraceError(f"{where}: corunners[{j}].share must be within 0..1, not {share}")
        runners.append(CoRunnerSpec(c["unit"], share, _number(c.get("stall_ratio", 0.1), f"{where}: stall_ratio")))
    return LoadPhase(start, end, tuple(runners))


def dump_trace(trace: Trace) -> str:
    """The trace as JSON text, one request per line (small diffs, readable files)."""
    head = {"format": TRACE_FORMAT, "version": TRACE_VERSION, "name": trace.name, "description": trace.description,
            "time_unit": trace.time_unit}
    load = [{"start": p.start, "end": p.end, "corunners": [
        {"unit": c.unit, "share": c.share, "stall_ratio": c.stall_ratio} for c in p.corunners]} for p in trace.load]
    rows = ",\n    ".join(json.dumps([_short(r.t), _short(r.deadline), r.floor]) for r in trace.requests)
    body = json.dumps(head, indent=2)[:-2]
    return f"{body},\n  \"load\": {json.dumps(load)},\n  \"requests\": [\n    {rows}\n  ]\n}}\n"


def _short(x: float) -> float | int:
    rounded = round(x, 4)
    return int(rounded) if rounded == int(rounded) else rounded


def save_trace(trace: Trace, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_trace(trace), encoding="utf-8")
    return path


# -- resolving against a board and a model -----------------------------------------------------------
def resolve(trace: Trace, *, ref_ms: float, groups: int, accuracy_of: Callable[[int], float | None],
            units: Sequence[tuple[str, str]], inference_unit: str) -> ResolvedTrace:
    """Absolute times (s), deadlines (ms), floors (fractions) and the co-runner scenario.

    ``units`` lists the board's (name, kind) pairs; ``inference_unit`` is what ``@inference`` means.
    """
    ms = ref_ms if trace.time_unit == "ref" else 1.0
    arrivals = tuple(Arrival(i, r.t * ms / 1000.0, r.deadline * ms, _floor(r.floor, groups, accuracy_of))
                     for i, r in enumerate(trace.requests))
    phases = tuple(Phase(p.start * ms / 1000.0, p.end * ms / 1000.0,
                         tuple(CoRunner(name, c.share, stall_ratio=c.stall_ratio)
                               for c in p.corunners for name in _units(c.unit, units, inference_unit)))
                   for p in trace.load)
    try:
        scenario = Scenario(phases, name=f"trace:{trace.name}")
    except ValueError as exc:
        raise TraceError(f"trace {trace.name}: {exc}") from exc
    return ResolvedTrace(trace.name, arrivals, scenario, trace.duration * ms / 1000.0, ms, inference_unit)


def _floor(floor: str | float | None, groups: int, accuracy_of: Callable[[int], float | None]) -> float | None:
    if floor is None or isinstance(floor, float):
        return floor
    match = _FLOOR.match(floor)
    assert match is not None  # validated when parsed
    k = groups - int(match.group(2) or 0) if match.group(1).startswith("G") else int(match.group(3))
    accuracy = accuracy_of(min(max(k, 1), groups))
    return accuracy if accuracy and accuracy > 0 else None


def _units(selector: str, units: Sequence[tuple[str, str]], inference_unit: str) -> list[str]:
    if selector == "@inference":
        return [inference_unit]
    if selector in ("@cpu", "@gpu"):
        return [name for name, kind in units if kind == selector[1:]]
    if selector in {name for name, _ in units}:
        return [selector]
    raise TraceError(f"co-runner unit {selector!r} is not on this board; use one of "
                     f"{[n for n, _ in units]}, @inference, @cpu or @gpu")
