"""Entry point of the ``governor`` command.

Subcommands live in their own modules and are imported only when chosen, so ``governor status``
never pays for torch. A module provides ``register(subparsers) -> argparse.ArgumentParser`` and
the parser's ``func`` default, which takes the parsed args and returns an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from governor import __version__
from governor.cli import CliError

__all__ = ["COMMANDS", "CliError", "build_parser", "main"]

# name -> (module, one-line help). Order is the order `governor --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "boards": ("governor.cli.boards", "list the board catalogue"),
    "status": ("governor.cli.status", "show a board's domains, frequencies, load, power and temperatures"),
    "serve": ("governor.cli.serve", "run the daemon: choose and apply an operating point for every request"),
    "demo": ("governor.cli.demo", "start the daemon and watch it meet changing budgets under changing load"),
    "restore": ("governor.cli.restore", "put back the board state a daemon saved (after a crash)"),
    "train": ("governor.cli.train", "train a dynamic group-pruned network incrementally into a model file"),
    "plan-training": ("governor.cli.plan_training", "which group counts and batch sizes fit a training budget"),
    "profile": ("governor.cli.profile", "fit a network's latency/power/energy models from few measurements"),
    "predict": ("governor.cli.predict", "predict latency/power/energy with uncertainty over a grid CSV"),
    "evaluate": ("governor.cli.evaluate", "replay a request trace under our policy and the baselines (simulated)"),
    "install-service": ("governor.cli.install_service", "install the systemd unit and config (--prefix DIR to stage)"),
    "uninstall-service": ("governor.cli.install_service", "remove the systemd unit (the config stays unless --purge)"),
    "keys": ("governor.cli.keys", "make CURVE key pairs for tcp:// endpoints (server, or --client)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="governor", description="DVFS-aware DNN inference governor")
    parser.add_argument("--version", action="version", version=f"dnn-governor {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        # No -h here: `governor CMD --help` must reach the command's own parser, which knows its flags.
        sub = subparsers.add_parser(name, help=help_text, description=help_text, add_help=False)
        sub.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse once to find the command, then let its module add its own arguments and parse again.
    known, _ = parser.parse_known_args(argv)
    if not getattr(known, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[known.command][0])
    parser = argparse.ArgumentParser(prog=f"governor {known.command}", description=COMMANDS[known.command][1])
    module.register(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"governor {known.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"governor {known.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
