"""`governor status`: what a board has and what it is doing now.

Samples twice (load is a difference of two /proc/stat readings), then prints the DVFS domains with
current/min/max and available frequencies, load per compute unit, power per rail and temperatures,
and which sensor source (sysfs, jtop, tegrastats) supplied them.
``--watch S`` keeps redrawing; ``--json`` is for scripts. A simulated board says so on every line
that carries a figure. ``--explain`` samples nothing: it prints where each domain, rail sensor,
thermal zone and load file was found, in what format, and which candidates were tried.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

from governor.cli.main import CliError
from governor.core.types import Observation


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", default="auto", help="catalogue name, 'auto' (detect) or 'sim:NAME' (simulated)")
    parser.add_argument("--sysfs-root", default="/", metavar="DIR", help="root standing in for / (fake trees)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--interval", type=float, default=0.5, metavar="S", help="seconds between samples")
    parser.add_argument("--watch", action="store_true", help="keep sampling and redrawing (Ctrl-C stops)")
    parser.add_argument("--count", type=int, default=0, metavar="N", help="with --watch: stop after N redraws")
    parser.add_argument("--explain", action="store_true",
                        help="where each domain, rail, zone and load file was found, and what was tried")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from governor.daemon.target import TargetError, open_target

    if args.interval <= 0:
        raise CliError("--interval must be positive (seconds)")
    try:
        target = open_target(args.board, args.sysfs_root, clock="real", scenario="demo")
    except TargetError as exc:
        raise CliError(str(exc)) from exc
    if args.explain:
        try:
            print(explain_text(target, as_json=args.json), flush=True)
            return 0
        finally:
            target.close()
    try:
        target.board.sample()  # primes load deltas
        shown = 0
        while True:
            time.sleep(args.interval)
            obs = target.board.sample()
            text = json.dumps(as_json(target, obs), indent=2) if args.json else render(target, obs)
            if args.watch and not args.json:
                print("\033[H\033[J", end="")
            print(text, flush=True)
            shown += 1
            if not args.watch or (args.count and shown >= args.count):
                return 0
    finally:
        target.close()


def as_json(target: Any, obs: Observation) -> dict[str, Any]:
    spec = target.spec
    domains = {}
    for name, reading in obs.domains.items():
        available = target.board.domains[name].available_hz() if name in target.board.domains else ()
        domains[name] = {
            "kind": spec.domain(name).kind if any(d.name == name for d in spec.domains) else "cpu",
            "cur_hz": reading.cur_hz,
            "min_hz": reading.min_hz,
            "max_hz": reading.max_hz,
            "governor": reading.governor,
            "available_hz": list(available),
        }
    return {
        "board": spec.name,
        "title": spec.board.title,
        "simulated": target.simulated,
        "root": target.root,
        "sensors": sensors_line(target),
        "t": obs.t,
        "domains": domains,
        "util": dict(obs.util),
        "power_mw": dict(obs.power_mw),
        "total_power_mw": obs.total_power_mw,
        "temps_c": dict(obs.temps_c),
        "unavailable": [*obs.unavailable, *(f"{k}: {v}" for k, v in target.board.unavailable.items())],
    }


def sensors_line(target: Any) -> str:
    """Which sensor source the board reads (sysfs, jtop or tegrastats), where, and why."""
    choice = getattr(target.board, "source_choice", None)
    return choice.describe() if choice is not None else "sysfs"


def _mhz(hz: int) -> str:
    return f"{hz / 1e6:.1f}"


def render(target: Any, obs: Observation) -> str:
    data = as_json(target, obs)
    tag = "  [SIMULATED]" if target.simulated else ""
    lines = [f"{data['board']}: {data['title']}{tag}", f"root: {data['root']}", f"sensors: {data['sensors']}", ""]
    rows = [("DOMAIN", "KIND", "CUR MHz", "MIN MHz", "MAX MHz", "GOVERNOR", "AVAILABLE MHz")]
    for name, d in data["domains"].items():
        avail = d["available_hz"]
        span = f"{len(avail)} steps {_mhz(avail[0])}..{_mhz(avail[-1])}" if avail else "-"
        rows.append((name, d["kind"], _mhz(d["cur_hz"]), _mhz(d["min_hz"]), _mhz(d["max_hz"]), d["governor"] or "-",
                     span))
    if len(rows) > 1:
        lines += _table(rows)
    else:
        lines.append("no DVFS domains found (no writable cpufreq/devfreq under this root)")
    lines.append("")
    lines.append("LOAD      " + ("  ".join(f"{u} {v * 100:.0f}%" for u, v in data["util"].items()) or "-"))
    power = "  ".join(f"{r} {v:.0f}" for r, v in data["power_mw"].items())
    total = f"  total {data['total_power_mw']:.0f}" if data["total_power_mw"] is not None else ""
    lines.append(f"POWER mW  {power or 'no power sensors'}{total}{tag}")
    temps = "  ".join(f"{z} {v:.1f}" for z, v in data["temps_c"].items())
    lines.append(f"TEMP °C   {temps or 'no thermal zones'}{tag}")
    if data["unavailable"]:
        lines += ["", "UNAVAILABLE", *(f"  {u}" for u in data["unavailable"])]
    return "\n".join(lines)


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def explain_text(target: Any, *, as_json: bool) -> str:
    from governor.drivers.explain import explain, explain_json

    if as_json:
        return json.dumps({"board": target.spec.name, "root": target.root, "simulated": target.simulated,
                           "sensors": sensors_line(target), "parts": explain_json(target.board)}, indent=2)
    tag = "  [SIMULATED]" if target.simulated else ""
    lines = [f"{target.spec.name}: {target.spec.board.title}{tag}", f"root: {target.root}", ""]
    for found in explain(target.board):
        lines.append(f"{found.part} ({found.kind}, {found.format or '-'}): {found.found_at or 'NOT FOUND'}")
        lines.append(f"    tried {', '.join(found.tried) or '-'}")
        lines.append(f"    probe {found.probe}")
    return "\n".join(lines)
