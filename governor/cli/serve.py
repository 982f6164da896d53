"""`governor serve`: the daemon. With no board it serves the host with the bundled digits model."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from governor.cli import CliError
from governor.cli.main import describe_error


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML config (systemd/governor.toml documents every key)")
    parser.add_argument("--endpoint", help="ipc://PATH or tcp://HOST:PORT (default: ipc socket in the runtime dir)")
    parser.add_argument("--board", help="catalogue name, 'auto' (default) or 'sim:NAME' (simulated)")
    parser.add_argument("--sysfs-root", metavar="DIR", help="root standing in for / (fake trees in tests)")
    parser.add_argument("--model", metavar="MODEL", help="model file from `governor train` (default: bundled)")
    parser.add_argument("--state-file", metavar="FILE", help="where the board's baseline is kept")
    parser.add_argument("--profile", metavar="PROFILE.json",
                        help="serve this profile from `governor profile --out` (default: where `governor profile` "
                             "writes, <state dir>/profiles/<model>/<board>.json, else measured at first start)")
    parser.add_argument("--profile-points", type=int, metavar="N",
                        help="first-start profiling budget when no profile exists (default: 24 per mapping)")
    parser.add_argument("--tick-hz", type=float, help="sensor sampling rate, Hz (default 10)")
    parser.add_argument("--engine", choices=("internal", "external"),
                        help="external: your application runs the model (leases only; no torch loaded; needs a "
                             "profile); default internal")
    parser.add_argument("--dump-config", action="store_true", help="print the effective config as JSON and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from governor.daemon.config import ConfigError, load_config
    from governor.daemon.statefile import StateFileError
    from governor.daemon.target import TargetError
    from governor.transport.zmq_server import TransportError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config).with_overrides(
            endpoint=args.endpoint, board=args.board, sysfs_root=args.sysfs_root, model=args.model,
            state_file=args.state_file, tick_hz=args.tick_hz, profile_points=args.profile_points,
            profile=args.profile, engine=args.engine)
    except ConfigError as exc:
        raise CliError(str(exc)) from exc
    if args.dump_config:
        print(config.model_dump_json(indent=2))
        return 0
    from governor.daemon.app import build_app
    from governor.daemon.lifecycle import StartupInterrupted

    try:
        app = build_app(config, say=lambda line: print(line, flush=True))
    except StartupInterrupted as stop:  # asked to stop while starting: a clean stop, not an error
        print(f"governor serve: stopped by {stop.name} before serving", file=sys.stderr, flush=True)
        return 130 if stop.signum == signal.SIGINT else 0
    except (TargetError, TransportError, StateFileError, ValueError, OSError) as exc:
        raise CliError(describe_error(exc) or str(exc)) from exc
    return app.serve()
