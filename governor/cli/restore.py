"""`governor restore`: put back the board baseline a daemon saved (after a crash, or from ExecStopPost).

It refuses while the daemon that wrote the state file is alive (it holds the board's lock): that
daemon restores the board itself when it stops, and restoring under it would reset its clocks and
delete the file it needs after a crash. While it restores, it holds that lock itself, so no daemon
starts on the board halfway through.
"""

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
    from governor.daemon.boardlock import hold_for_restore
    from governor.daemon.config import ConfigError, load_config
    from governor.daemon.statefile import StateFileError
    from governor.daemon.target import TargetError

    try:
        config = load_config(args.config).with_overrides(state_file=args.state_file)
        path = config.state_file()
        if args.state_file and not path.exists():
            # Named by hand: a missing file is more likely a typo than a clean stop, so say which it is not.
            raise CliError(f"no state file at {path}: check the path (a daemon keeps its state where its "
                           "--state-file or the state_file of its config says), or give --config instead")
        lock = hold_for_restore(path)
        try:
            note = restore_leftover(path)
        finally:
            if lock is not None:
                lock.release()
    except (ConfigError, StateFileError, TargetError, OSError) as exc:
        raise CliError(f"{exc}") from exc
    if note or not args.quiet:
        print(note or f"nothing to restore ({path} does not exist: the last stop was clean)")
    return 0
