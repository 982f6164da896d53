"""The ``governor-client`` command: talk to a running governor daemon from the shell.

    governor-client [--endpoint E] infer INPUT.npy [--deadline-ms X] [--energy-mj Y]
                    [--min-accuracy Z] [--objective min_energy|max_accuracy|min_latency] [--json]
    governor-client advise [budget flags] [--json]
    governor-client status | profiles | reload [--json]
    governor-client telemetry [--topic observation|inference|event ...] [--count N] [--json]

Exit codes: 0 done, 1 the daemon refused or could not be reached (the message says what to do),
2 bad command line or input file, 141 the reader of the output went away (``| head``). Every error
is one line on stderr; an unexpected one names itself, and GOVERNOR_DEBUG=1 adds its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import zmq

from governor.console import internal_error, one_line, quiet_broken_pipe, stdout_gone
from governor.core.protocol import TELEMETRY_TOPICS
from governor_client import _format
from governor_client._errors import GovernorError
from governor_client._transport import CurveKeys, default_endpoint
from governor_client.client import Client

__all__ = ["main"]



class UsageError(Exception):
    """Bad command line or input file: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="governor-client", description="Talk to a running governor daemon.")
    parser.add_argument("--endpoint", help="daemon endpoint (default: $GOVERNOR_ENDPOINT or the daemon's ipc socket)")
    parser.add_argument("--timeout-ms", type=int, default=3000, help="wait per attempt, ms (default 3000)")
    parser.add_argument("--retries", type=int, default=2, help="resends after a timeout (default 2)")
    parser.add_argument("--curve-server-key", metavar="FILE", help="the daemon's public certificate (tcp://)")
    parser.add_argument("--curve-client-key", metavar="FILE", help="this client's secret certificate (tcp://)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    infer = _command(commands, "infer", "run one inference on the arrays in a .npy/.npz file", _infer)
    infer.add_argument("input", metavar="INPUT", help=".npy (one input) or .npz (named inputs)")
    infer.add_argument("--save", metavar="OUT.npz", help="write the outputs to this .npz file")
    _budget_flags(infer)
    _budget_flags(_command(commands, "advise", "the operating point infer would choose, without running", _advise))
    _command(commands, "status", "the daemon's board, model, clocks, power and temperatures", _status)
    _command(commands, "profiles", "the loaded model profiles", _profiles)
    _command(commands, "reload", "reset what the daemon learned at run time (a new model or profile needs a "
             "restart)", _reload)
    telemetry = _command(commands, "telemetry", "follow the daemon's telemetry", _telemetry)
    telemetry.add_argument("--topic", action="append", choices=TELEMETRY_TOPICS, help="repeatable; default all")
    telemetry.add_argument("--count", type=int, default=0, help="stop after N messages (default: never)")
    return parser


def _command(commands: Any, name: str, help_text: str, func: Callable[..., str]) -> argparse.ArgumentParser:
    sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.set_defaults(func=func)
    return sub


def _budget_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--deadline-ms", type=float, help="latency budget per inference, ms")
    parser.add_argument("--energy-mj", type=float, help="energy budget per inference, mJ")
    parser.add_argument("--min-accuracy", type=float, help="lowest acceptable accuracy, fraction 0..1")
    parser.add_argument("--objective", choices=["min_energy", "max_accuracy", "min_latency"],
                        help="what to optimise among the points that meet the budget (default: the daemon's "
                             "[policy] objective, min_energy unless configured)")
    parser.add_argument("--strict", action="store_true", help="fail instead of returning a best-effort point")
    parser.add_argument("--model", help="profile to use (default: the daemon's)")


def _budget(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("deadline_ms", "energy_mj", "min_accuracy", "objective", "strict", "model")
    return {key: getattr(args, key) for key in keys}


def load_inputs(path: str) -> dict[str, np.ndarray]:
    """Arrays from a .npy or .npz file, never unpickling anything."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError(f"no such input file: {path}") from None
    except (ValueError, OSError) as exc:
        raise UsageError(
            f"{path} is not a .npy/.npz file of plain numeric arrays ({exc}); save it with numpy.save"
        ) from None
    if isinstance(loaded, np.ndarray):
        return {"input": loaded}
    with loaded:
        return {name: loaded[name] for name in loaded.files}


def _infer(client: Client, args: argparse.Namespace) -> str:
    result = client.infer(load_inputs(args.input), **_budget(args))
    if args.save:
        np.savez(args.save, **dict(result.outputs))  # type: ignore[arg-type]  # numpy stubs mistype **arrays
    return _dump(result.to_dict()) if args.json else _format.format_infer(result)


def _advise(client: Client, args: argparse.Namespace) -> str:
    advice = client.advise(**_budget(args))
    return _dump(advice.to_dict()) if args.json else _format.format_advice(advice)


def _status(client: Client, args: argparse.Namespace) -> str:
    status = client.status()
    return _dump(status.model_dump(mode="json")) if args.json else _format.format_status(status)


def _profiles(client: Client, args: argparse.Namespace) -> str:
    reply = client.profiles()
    return _dump(reply.model_dump(mode="json")) if args.json else _format.format_profiles(reply)


def _reload(client: Client, args: argparse.Namespace) -> str:
    reply = client.reload()
    return _dump(reply.model_dump(mode="json")) if args.json else _format.format_reload(reply)


def _telemetry(client: Client, args: argparse.Namespace) -> str:
    with client.telemetry(args.topic or ()) as subscription:
        for count, msg in enumerate(subscription, start=1):
            line = json.dumps(msg.model_dump(mode="json")) if args.json else _format.format_telemetry(msg)
            print(line, flush=True)
            if count == args.count:
                break
    return ""


def _dump(obj: Any) -> str:
    return json.dumps(obj, indent=2)


def _client(args: argparse.Namespace) -> Client:
    curve = None
    if args.curve_server_key or args.curve_client_key:
        if not (args.curve_server_key and args.curve_client_key):
            raise UsageError("CURVE needs both --curve-server-key and --curve-client-key")
        try:
            curve = CurveKeys.from_files(args.curve_server_key, args.curve_client_key)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot load CURVE keys: {exc}") from None
    if args.timeout_ms <= 0 or args.retries < 0:
        raise UsageError("--timeout-ms must be > 0 and --retries >= 0")
    endpoint = args.endpoint or default_endpoint()
    return Client(endpoint, timeout_ms=args.timeout_ms, retries=args.retries, curve=curve)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = None
    # Everything from here on ends in one line on stderr, never a traceback.
    try:  # the client connects on its first call, so a bad input file fails before any network I/O
        client = _client(args)
        output = args.func(client, args)
        if output:
            print(output)
        sys.stdout.flush()  # a reader that went away shows here when the output was buffered
    except UsageError as exc:
        return _usage_error(str(exc))
    except GovernorError as exc:
        print(f"governor-client: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError as exc:
        if stdout_gone():
            return quiet_broken_pipe()
        return _usage_error(f"{exc.strerror}")
    except zmq.ZMQError as exc:
        endpoint = args.endpoint or default_endpoint()
        if exc.errno == errno.EINVAL:  # libzmq's answer to an endpoint it cannot parse
            return _usage_error(f"{endpoint!r} is not a usable endpoint ({exc.strerror}); give ipc://PATH or "
                                "tcp://HOST:PORT with --endpoint or $GOVERNOR_ENDPOINT")
        print(f"governor-client: unreachable: cannot talk to {endpoint}: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        return _usage_error(one_line(str(exc)))
    except Exception as exc:
        return internal_error("governor-client", exc)
    finally:
        if client is not None:
            client.close()
    return 0


def _usage_error(message: str) -> int:
    print(f"governor-client: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
