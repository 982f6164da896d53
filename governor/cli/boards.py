"""`governor boards`: list the board catalogue."""

from __future__ import annotations

import argparse
import json

from governor.cli.main import CliError
from governor.drivers.catalogue import CatalogueError, board_names, load_board


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--profiles", metavar="DIR", help="profiles directory (default: the bundled one)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        specs = [load_board(name, args.profiles) for name in board_names(args.profiles)]
    except CatalogueError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps([spec.model_dump(mode="json") for spec in specs], indent=2))
        return 0
    rows = [("BOARD", "FAMILY", "SOC", "UNITS", "DOMAINS", "TITLE")]
    for s in specs:
        units = ",".join(u.name for u in s.units)
        domains = ",".join(d.name for d in s.domains) or "-"
        rows.append((s.name, s.board.family, s.board.soc, units, domains, s.board.title))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
    print("\nAlso: sim:<board> for a simulated board (labelled simulated wherever it appears).")
    return 0
