"""`governor predict`: a profile's predictions, with uncertainties, for every row of a grid CSV.

GRID uses the replay-table columns (``<domain>_<hz|khz|mhz>``, optional ``mapping`` and ``groups``;
see governor.drivers.replay). OUT holds GRID's rows followed by ``<target>`` and ``<target>_std``
for each target the profile models (latency_ms, power_mw, energy_mj, rails), and ``simulated``.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

from governor.cli.main import CliError
from governor.cli.profile import single_threaded_blas, write_atomically
from governor.core.perf.profile import ProfileModel
from governor.core.perf.schema import ProfileError, parse_profile, profile_model
from governor.drivers.replay import ReplayError, Table, read_table

_ORDER = ("latency_ms", "power_mw", "energy_mj")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, metavar="PROFILE.json", help="a file written by governor profile")
    parser.add_argument("--grid", required=True, metavar="GRID.csv", help="operating points to predict")
    parser.add_argument("--out", required=True, metavar="OUT.csv", help="where to write the predictions")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT")
    parser.set_defaults(func=run)


def load_profile(path: str) -> ProfileModel:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror}") from exc
    try:
        return profile_model(parse_profile(text, path))
    except ProfileError as exc:
        raise CliError(str(exc)) from exc


def _grid_rows(model: ProfileModel, table: Table) -> np.ndarray:
    """GRID's points as rows [f_1..f_D (Hz), k] in the profile's domain order."""
    extra = sorted(set(table.domains) - set(model.domains))
    missing = [d for d in model.domains if d not in table.domains]
    if missing or extra:
        raise CliError(f"{table.source}: frequency columns must cover exactly the profile's domains "
                       f"{list(model.domains)} (missing {missing}, unknown {extra}); e.g. {model.domains[0]}_hz")
    order = [table.domains.index(d) for d in model.domains]
    grid = np.column_stack([table.grid[:, order], table.grid[:, -1]])
    if not table.has_groups:
        if len(model.groups) != 1:
            raise CliError(f"{table.source}: add a groups column; the profile covers groups {list(model.groups)}")
        grid[:, -1] = model.groups[0]
    return grid


def _mappings(model: ProfileModel, table: Table) -> list[str]:
    if not table.has_mapping:
        if len(model.mappings) != 1:
            raise CliError(f"{table.source}: add a mapping column; the profile covers {list(model.mappings)}")
        return [model.mappings[0]] * len(table.grid)
    unknown = sorted(set(table.mapping) - set(model.mappings))
    if unknown:
        raise CliError(f"{table.source}: mapping(s) {unknown} are not in the profile; it has {list(model.mappings)}")
    return list(table.mapping)


def _targets(model: ProfileModel, header: tuple[str, ...]) -> list[str]:
    targets = [t for t in _ORDER if t in model.targets] + sorted(set(model.targets) - set(_ORDER))
    clash = [c for c in header for t in targets if c.strip().lower() in (t, f"{t}_std")]
    if clash:
        raise CliError(f"GRID already has column(s) {clash}; rename them (e.g. measured_{clash[0]}) so "
                       "predictions do not overwrite them")
    return targets


def _mhz(hz: float) -> str:
    return f"{hz / 1e6:g}"


def _refuse_outside(model: ProfileModel, table: Table, grid: np.ndarray) -> None:
    """A point outside the board's frequency table (or the profiled groups) is an error: the models
    extrapolate wildly there (a GPU at 9999 MHz came out at -5e8 mW), so no number is written."""
    bounds = [(d, min(f), max(f)) for d, f in zip(model.domains, model.opp_hz, strict=True)]
    for row, point in enumerate(grid, start=1):
        for (domain, lo, hi), hz in zip(bounds, point[:-1], strict=True):
            if not lo * (1 - 1e-9) <= hz <= hi * (1 + 1e-9):
                raise CliError(f"{table.source}: row {row}: {domain} at {_mhz(hz)} MHz is outside the board's "
                               f"table ({_mhz(lo)}-{_mhz(hi)} MHz); predict only inside it")
        if not min(model.groups) <= point[-1] <= max(model.groups):
            raise CliError(f"{table.source}: row {row}: groups {point[-1]:g} is outside the profiled groups "
                           f"({min(model.groups)}-{max(model.groups)})")


def predict_table(model: ProfileModel, table: Table) -> tuple[list[str], dict[str, np.ndarray]]:
    """Predicted mean and ``_std`` columns for every row of ``table``."""
    grid = _grid_rows(model, table)
    _refuse_outside(model, table, grid)
    mappings = np.array(_mappings(model, table))
    targets = _targets(model, table.header)
    columns = {name: np.full(len(grid), np.nan) for t in targets for name in (t, f"{t}_std")}
    for mapping in dict.fromkeys(mappings.tolist()):
        rows = mappings == mapping
        for t in targets:
            if model.has(t, mapping):
                columns[t][rows], columns[f"{t}_std"][rows] = model.predict(t, mapping, grid[rows])
    return targets, columns


def _csv_text(table: Table, targets: list[str], columns: dict[str, np.ndarray], simulated: bool) -> str:
    names = [n for t in targets for n in (t, f"{t}_std")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*table.header, *names, "simulated"])
    for i, cells in enumerate(table.cells):
        values = ["" if np.isnan(columns[n][i]) else f"{columns[n][i]:.6g}" for n in names]
        writer.writerow([*cells, *values, "true" if simulated else "false"])
    return buffer.getvalue()


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CliError(f"{out} exists; pass --force to replace it")
    model = load_profile(args.profile)
    try:
        table = read_table(args.grid, require_measured=False, unique=False)
    except ReplayError as exc:
        raise CliError(str(exc)) from exc
    with single_threaded_blas():
        targets, columns = predict_table(model, table)
    write_atomically(out, _csv_text(table, targets, columns, model.simulated))
    label = " (from SIMULATED measurements)" if model.simulated else ""
    print(f"wrote {out}: {len(table.cells)} rows x {', '.join(targets)}{label}")
    return 0
