"""Entry point of the ``governor`` command.

Subcommands live in their own modules and are imported only when chosen, so ``governor status``
never pays for torch. A module provides ``register(subparsers) -> argparse.ArgumentParser`` and
the parser's ``func`` default, which takes the parsed args and returns an exit code.

No command ends in a traceback: a :class:`CliError`, and any error that bad input, a missing file or
the system causes (see :func:`describe_error`), is one line ``governor CMD: error: ...`` and exit 2;
a reader of stdout that went away ends the command quietly with 141, as SIGPIPE would; a bug is one
line naming it and where it happened, exit 1, and ``GOVERNOR_DEBUG=1`` adds its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from governor import __version__
from governor.cli import CliError
from governor.console import DEBUG_ENV, internal_error, one_line, quiet_broken_pipe, stdout_gone

__all__ = ["COMMANDS", "DEBUG_ENV", "CliError", "build_parser", "describe_error", "main"]


# name -> (module, one-line help). Order is the order `governor --help` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "boards": ("governor.cli.boards", "list the board catalogue"),
    "status": ("governor.cli.status", "show a board's domains, frequencies, load, power and temperatures"),
    "probe-report": ("governor.cli.probe_report",
                     "write the board's sysfs/debugfs layout and first bytes of each value, for a bug report"),
    "serve": ("governor.cli.serve", "run the daemon: choose and apply an operating point for every request"),
    "demo": ("governor.cli.demo", "start the daemon and watch it meet changing budgets under changing load"),
    "restore": ("governor.cli.restore", "put back the board state a daemon saved (after a crash)"),
    "train": ("governor.cli.train", "train a dynamic group-pruned network incrementally into a model file"),
    "convert": ("governor.cli.convert", "convert your PyTorch CNN into a dynamic group network model file"),
    "export": ("governor.cli.export", "write one ONNX file per k (checked in onnxruntime), for TensorRT"),
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
    prog = f"governor {known.command}"
    args = None
    # Everything from here on ends in one line on stderr, never a traceback (DEVELOPERS.md).
    try:
        module = importlib.import_module(COMMANDS[known.command][0])
        parser = argparse.ArgumentParser(prog=prog, description=COMMANDS[known.command][1])
        module.register(parser)
        args = parser.parse_args(argv[1:])
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here when the output was buffered
        return code
    except CliError as exc:
        return _error(prog, str(exc))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if stdout_gone():
            return quiet_broken_pipe()
        return _error(prog, describe_error(exc) or str(exc))
    except Exception as exc:
        known_error = describe_error(exc)
        if known_error is not None:
            return _error(prog, known_error)
        return internal_error(prog, exc, debug=bool(getattr(args, "verbose", False)))


def describe_error(exc: BaseException) -> str | None:
    """One line for an error that bad input, a missing file or the system causes; None for a bug.

    The project's own exception classes (governor.*) carry messages that say what to do; ValueError
    is what parsing user input raises; OSError and ZeroMQ errors come from the files and sockets
    named on the command line."""
    if isinstance(exc, OSError):
        where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        text = f"{where}: {exc.strerror}" if where and exc.strerror else str(exc)
    elif type(exc).__module__.startswith("zmq"):
        text = f"ZeroMQ: {exc}; check the endpoint (ipc://PATH or tcp://HOST:PORT)"
    elif isinstance(exc, ModuleNotFoundError):
        text = f"{exc}: this command needs it; install it (pip install {exc.name or 'the package'})"
    elif isinstance(exc, ValueError) or type(exc).__module__.startswith("governor"):
        text = str(exc) or type(exc).__name__
    else:
        return None
    return one_line(text)


def _error(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
