"""`governor restore`: put back the board baseline a daemon saved (after a crash, or from ExecStopPost)."""

from __future__ import annotations

import argparse

from governor.cli import CliError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the daemon's TOML config (to find its state file)")
    parser.add_argument("--state-file", metavar="FILE", help="the baseline state file (overrides the config)")
    parser.add_argument("--quiet", action="store_true", help="print nothing when there is nothing to restore")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from governor.daemon.app import restore_leftover
    from governor.daemon.config import ConfigError, load_config
    from governor.daemon.statefile import StateFileError
    from governor.daemon.target import TargetError

    try:
        config = load_config(args.config).with_overrides(state_file=args.state_file)
        note = restore_leftover(config.state_file())
    except (ConfigError, StateFileError, TargetError, OSError) as exc:
        raise CliError(f"{exc}") from exc
    if note or not args.quiet:
        print(note or f"nothing to restore ({config.state_file()} does not exist: the last stop was clean)")
    return 0
