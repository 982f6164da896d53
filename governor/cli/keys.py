"""`governor keys`: CURVE key pairs for tcp:// endpoints, and how to wire them.

Layout under ``--dir`` (default ``/etc/governor/keys``)::

    server.key            the daemon's public key: every client needs a copy
    server.key_secret     the daemon's secret key (0600): [access] curve_server_secret
    authorized/NAME.key   public keys of the clients let in: [access] curve_authorized_dir
    clients/NAME.key[_secret]   client pairs made here with --client (copy the secret to the client)

Keys are zmq certificate files (``zmq.auth.create_certificates``). Secrets are written under a
0077 umask, so they are never readable by others even for an instant. An existing pair is never
replaced without ``--force``: a new server key locks out every client that has the old one.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
from pathlib import Path

from governor.cli import CliError

__all__ = ["make_pair", "register", "run"]

DEFAULT_DIR = "/etc/governor/keys"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default=DEFAULT_DIR, metavar="DIR", help=f"key directory (default {DEFAULT_DIR})")
    parser.add_argument("--name", metavar="NAME", help="file name of the pair (default: server, or client)")
    parser.add_argument("--client", action="store_true",
                        help="make a client pair in DIR/clients and authorise it (copy into DIR/authorized)")
    parser.add_argument("--force", action="store_true", help="replace an existing pair of that name")
    parser.set_defaults(func=run)


def make_pair(directory: Path, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Write ``name.key`` (0644) and ``name.key_secret`` (0600) into ``directory``; return both paths."""
    import zmq.auth

    if not _NAME.match(name):
        raise CliError(f"--name {name!r}: use letters, digits, '.', '_' or '-' (it names the key files)")
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if (public.exists() or secret.exists()) and not force:
        raise CliError(f"{public} already exists; a new pair locks out whoever holds the old keys "
                       "(pass --force to replace it, or choose another --name)")
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o755)
        previous = os.umask(0o077)
        try:
            zmq.auth.create_certificates(directory, name)
        finally:
            os.umask(previous)
        public.chmod(0o644)
        secret.chmod(0o600)
    except PermissionError as exc:
        raise CliError(f"cannot write keys into {directory}: {exc.strerror}; run as root or pass --dir") from exc
    return public, secret


def run(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    if args.client:
        lines = _client(directory, args.name or "client", args.force)
    else:
        lines = _server(directory, args.name or "server", args.force)
    print("\n".join(lines))
    return 0


def _server(directory: Path, name: str, force: bool) -> list[str]:
    public, secret = make_pair(directory, name, force=force)
    authorized = directory / "authorized"
    authorized.mkdir(mode=0o755, exist_ok=True)
    return [
        f"wrote {public} (public: every client needs a copy)",
        f"wrote {secret} (secret, mode 0600: never copy it off this machine)",
        "",
        "In the daemon's config (/etc/governor/governor.toml), then: systemctl restart governor",
        "  [daemon]",
        '  endpoint = "tcp://0.0.0.0:5555"',
        '  telemetry_endpoint = "tcp://0.0.0.0:5556"',
        "  [access]",
        f'  curve_server_secret = "{secret}"',
        f'  curve_authorized_dir = "{authorized}"',
        "Keep curve_authorized_dir set: a tcp:// endpoint refuses to start without it (or curve_allow_any = true).",
        f"Let a client in: governor keys --dir {directory} --client --name NAME",
    ]


def _client(directory: Path, name: str, force: bool) -> list[str]:
    public, secret = make_pair(directory / "clients", name, force=force)
    authorized = directory / "authorized"
    authorized.mkdir(parents=True, mode=0o755, exist_ok=True)
    shutil.copyfile(public, authorized / public.name)
    (authorized / public.name).chmod(0o644)
    server = directory / "server.key"
    missing = [] if server.exists() else [f"(no {server} yet: make it with governor keys --dir {directory})"]
    return [
        f"wrote {public} and {secret} (secret, mode 0600)",
        f"authorised: {authorized / public.name} (the daemon reads this directory at start: "
        "systemctl restart governor)",
        *missing,
        "",
        f"On the client machine, with copies of {server} and {secret}:",
        f"  governor-client --endpoint tcp://BOARD:5555 --curve-server-key server.key "
        f"--curve-client-key {secret.name} status",
        "  Python: Client('tcp://BOARD:5555', curve=CurveKeys.from_files('server.key', "
        f"'{secret.name}'))",
        f"Revoke it: rm {authorized / public.name} && systemctl restart governor",
    ]
