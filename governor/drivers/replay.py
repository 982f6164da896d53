"""Recorded measurement tables: read them, and replay them as a measurement source.

``governor profile --source replay:TABLE.csv`` answers each measurement the profiler asks for from
a table recorded earlier (on a board, or by the simulator) instead of a board, and only the rows it
asks for: :attr:`ReplaySource.served` lists them, so a benchmark can show how few were needed.

Table columns (CSV with a header; order free, names case-insensitive):

- ``<domain>_<unit>``: the setpoint of a DVFS domain, unit ``hz``, ``khz`` or ``mhz``
  (``cpu_khz``, ``gpu_hz``, ``emc_hz``); at least one;
- ``mapping`` (the compute unit; default ``default``) and ``groups`` (active groups k; default 1);
- measured values, any subset, empty cell = not measured: ``latency_ms``, ``power_mw`` (board
  total), ``energy_mj`` (per inference), and per-rail power as any other ``<rail>_mw``;
- ``simulated`` (true/false): rows that come from a simulator stay labelled simulated;
- anything else (``samples``, ``*_util_pct``) is ignored and listed in :attr:`Table.ignored`.

The same reader loads the grids of ``governor predict`` (measured columns optional, repeats allowed).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from governor.core.perf.space import Measurement, ProfilePoint, Space

__all__ = ["MEASURED", "ReplayError", "ReplaySource", "Table", "parse_table", "read_table"]

MEASURED = ("latency_ms", "power_mw", "energy_mj")
_UNITS = {"hz": 1.0, "khz": 1e3, "mhz": 1e6}
_FREQ = re.compile(r"^(?P<domain>.+)_(?P<unit>hz|khz|mhz)$")
_TRUE = {"1", "true", "yes"}
_FALSE = {"", "0", "false", "no"}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ReplayError(ValueError):
    """A table is unusable, or lacks a row the profiler asked for. The message says which and why."""


@dataclass(frozen=True, eq=False)
class Table:
    """A parsed table. ``grid`` rows are ``[f_1..f_D (Hz), k]``; missing measured values are NaN."""

    source: str
    header: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]  # the raw rows, for echoing into outputs
    domains: tuple[str, ...]
    grid: FloatArray
    mapping: tuple[str, ...]  # per row
    values: dict[str, FloatArray]  # target -> per-row value (latency_ms, power_mw, energy_mj, <rail>_mw)
    simulated: npt.NDArray[np.bool_]
    ignored: tuple[str, ...]
    has_mapping: bool
    has_groups: bool

    def key(self, row: int) -> tuple[str, tuple[int, ...], int]:
        return self.mapping[row], tuple(round(f) for f in self.grid[row, :-1]), int(self.grid[row, -1])

    def space(self, mappings: tuple[str, ...] = (), groups: tuple[int, ...] = ()) -> tuple[Space, IntArray]:
        """The rows (optionally only some mappings/groups) as a candidate space, and their row numbers."""
        present = tuple(dict.fromkeys(self.mapping))
        missing = [m for m in mappings if m not in present]
        if missing:
            raise ReplayError(f"{self.source}: no rows for mapping(s) {missing}; the table has {list(present)}")
        wanted = mappings or present
        ks = self.grid[:, -1]
        keep = np.array([m in wanted for m in self.mapping]) & (np.isin(ks, groups) if groups else True)
        rows = np.flatnonzero(keep)
        if len(rows) == 0:
            raise ReplayError(f"{self.source}: no rows for groups {list(groups)}; it has {sorted(set(ks.astype(int)))}")
        order = tuple(m for m in wanted if m in {self.mapping[i] for i in rows})
        opp = tuple(tuple(sorted(set(self.grid[rows, j].tolist()))) for j in range(len(self.domains)))
        mapping_of = np.array([order.index(self.mapping[i]) for i in rows], dtype=np.int64)
        return Space(self.domains, self.grid[rows], mapping_of, order, opp), rows


def _number(text: str, column: str, line: int, source: str) -> float:
    try:
        value = float(text) if text.strip() else math.nan
    except ValueError:
        raise ReplayError(f"{source}: line {line}, column {column!r}: {text!r} is not a number") from None
    return value


def _flag(text: str, line: int, source: str) -> bool:
    word = text.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ReplayError(f"{source}: line {line}, column 'simulated': {text!r} is not true/false")
    return word in _TRUE


def _plan(header: list[str], source: str) -> tuple[list[tuple[int, str, float]], dict[str, int], list[str]]:
    freq: list[tuple[int, str, float]] = []
    named: dict[str, int] = {}
    ignored: list[str] = []
    for i, raw in enumerate(header):
        name = raw.strip().lower()
        match = _FREQ.match(name)
        domain = match["domain"] if match else None
        if name in named or any(d == domain for _, d, _ in freq):
            raise ReplayError(f"{source}: column {raw!r} appears twice (or its domain does, in another unit)")
        if match:
            freq.append((i, match["domain"], _UNITS[match["unit"]]))
        elif name in ("mapping", "groups", "simulated", *MEASURED) or name.endswith("_mw"):
            named[name] = i
        else:
            ignored.append(raw)
    if not freq:
        raise ReplayError(f"{source}: no frequency column; name them <domain>_<hz|khz|mhz>, e.g. gpu_hz")
    return freq, named, ignored


def parse_table(text: str, source: str, *, require_measured: bool = True, unique: bool = True) -> Table:
    """Parse CSV text. ``source`` names the table in errors (line numbers count the header as 1)."""
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ReplayError(f"{source}: needs a header line and at least one row")
    header, body = rows[0], rows[1:]
    freq, named, ignored = _plan(header, source)
    targets = [n for n in named if n in MEASURED or (n.endswith("_mw") and n not in MEASURED)]
    if require_measured and not targets:
        raise ReplayError(f"{source}: no measured column (latency_ms, power_mw, energy_mj or <rail>_mw)")
    grid = np.empty((len(body), len(freq) + 1))
    values = {t: np.empty(len(body)) for t in targets}
    mapping, simulated = [], np.zeros(len(body), dtype=bool)
    for r, cells in enumerate(body):
        line = r + 2
        if len(cells) != len(header):
            raise ReplayError(f"{source}: line {line} has {len(cells)} cells, the header has {len(header)}")
        for j, (col, _, scale) in enumerate(freq):
            grid[r, j] = _number(cells[col], header[col], line, source) * scale
            if not grid[r, j] > 0:
                raise ReplayError(f"{source}: line {line}, column {header[col]!r}: frequency must be positive")
        k = _number(cells[named["groups"]], "groups", line, source) if "groups" in named else 1.0
        if not (k >= 1 and float(k).is_integer()):
            raise ReplayError(f"{source}: line {line}, column 'groups': must be a whole number >= 1")
        grid[r, -1] = k
        given = cells[named["mapping"]].strip() if "mapping" in named else ""
        mapping.append(given or "default")
        simulated[r] = _flag(cells[named["simulated"]], line, source) if "simulated" in named else False
        for t in targets:
            values[t][r] = _number(cells[named[t]], header[named[t]], line, source)
    table = Table(source, tuple(header), tuple(tuple(c) for c in body), tuple(d for _, d, _ in freq), grid,
                  tuple(mapping), values, simulated, tuple(ignored), "mapping" in named, "groups" in named)
    if unique:
        _check_unique(table)
    return table


def _check_unique(table: Table) -> None:
    seen: dict[tuple[str, tuple[int, ...], int], int] = {}
    for r in range(len(table.grid)):
        key = table.key(r)
        if key in seen:
            raise ReplayError(f"{table.source}: lines {seen[key] + 2} and {r + 2} are the same operating point "
                              f"{key}; keep one (e.g. their median)")
        seen[key] = r


def read_table(path: str | os.PathLike[str], **kwargs: bool) -> Table:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReplayError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_table(text, str(path), **kwargs)


class ReplaySource:
    """A :class:`~governor.core.perf.space.MeasurementSource` that answers from a table."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._rows = {table.key(r): r for r in range(len(table.grid))}
        self.served: list[int] = []  # table row numbers (0-based, header excluded), in request order

    def measure(self, point: ProfilePoint) -> Measurement:
        key = (point.mapping, tuple(int(point.setpoints.hz[d]) for d in self.table.domains), point.groups)
        row = self._rows.get(key)
        if row is None:
            raise ReplayError(f"{self.table.source}: no row for {point.mapping} {dict(point.setpoints.hz)} "
                              f"groups={point.groups}")
        self.served.append(row)
        found = {t: float(v[row]) for t, v in self.table.values.items() if not math.isnan(v[row])}
        return Measurement(
            latency_ms=found.pop("latency_ms", None),
            power_mw=found.pop("power_mw", None),
            energy_mj=found.pop("energy_mj", None),
            rails_mw={t[:-3]: v for t, v in found.items()},
            simulated=bool(self.table.simulated[row]),
        )
