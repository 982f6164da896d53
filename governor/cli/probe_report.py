"""`governor probe-report`: a file to attach to a bug report, saying what this board's kernel shows.

Walks only the subtrees the drivers read (:data:`governor.drivers.probe_roots.PROBE_ROOTS`) and
records names, modes, link targets and the first ``--max-bytes`` bytes of each file, or why it could
not be read; it never writes anything but the report. The project's fake trees are corrected from
these reports (``governor.testing.tree_from_probe_report`` turns one into a test fixture). Run it as
root on a board, or debugfs (the Jetson EMC) is recorded as unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from governor.cli.main import CliError
from governor.drivers.probe_report import MAX_BYTES, build_probe_report

MAX_BYTES_LIMIT = 1 << 20  # a sysfs value is at most a page (4 KiB); debugfs tables may be longer


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sysfs-root", default="/", metavar="DIR", help="root standing in for / (fake trees)")
    parser.add_argument("--out", default="", metavar="FILE",
                        help="where to write the report: a file, a directory, or '-' for stdout "
                             "(default: governor-probe-report-<hostname>-<UTC date>.json here)")
    parser.add_argument("--max-bytes", type=int, default=MAX_BYTES, metavar="N",
                        help=f"leading bytes kept of each readable file (default {MAX_BYTES})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from governor.daemon.target import TargetError, open_sysfs_root

    if not 1 <= args.max_bytes <= MAX_BYTES_LIMIT:
        raise CliError(f"--max-bytes must be between 1 and {MAX_BYTES_LIMIT} (bytes kept of each file), "
                       f"not {args.max_bytes}")
    try:
        sysfs = open_sysfs_root(args.sysfs_root)
    except TargetError as exc:
        raise CliError(str(exc)) from exc
    out = None if args.out == "-" else Path(args.out or default_name())
    if out is not None and out.is_dir():
        out = out / default_name()
    if out is not None and not out.parent.is_dir():  # said before the walk, not after it
        raise CliError(f"--out {out}: the directory {out.parent} does not exist")
    started = time.monotonic()
    report = build_probe_report(sysfs, max_bytes=args.max_bytes)
    elapsed_s = time.monotonic() - started
    text = json.dumps(report, indent=1) + "\n"
    if out is None:
        sys.stdout.write(text)
        print(summary(report, elapsed_s, "stdout"), file=sys.stderr)
        return 0
    _write_atomically(out, text)
    print(summary(report, elapsed_s, str(out)))
    return 0


def default_name(now: datetime | None = None) -> str:
    """``governor-probe-report-<hostname>-<YYYY-MM-DD>.json``, the date in UTC; the host name made file-safe."""
    host = re.sub(r"[^A-Za-z0-9._-]+", "_", os.uname().nodename) or "host"
    day = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d")
    return f"governor-probe-report-{host}-{day}.json"


def summary(report: dict[str, Any], elapsed_s: float, where: str) -> str:
    """What was found, in a few lines: counts, the roots present and absent, why some could not be read."""
    kinds = Counter(e["kind"] for e in report["entries"])
    errors = Counter(e["error"] for e in report["entries"] if e.get("error"))
    present = [r["path"] for r in report["roots"] if r["present"]]
    absent = [r["path"] for r in report["roots"] if not r["present"]]
    hidden = sorted({r["error"] for r in report["roots"] if r.get("error")})
    lines = [
        f"probe report: {len(report['entries'])} entries ({kinds['file']} files, {kinds['dir']} directories, "
        f"{kinds['link']} links) in {elapsed_s:.2f} s, written to {where}",
        f"read errors: {', '.join(f'{n} {name}' for name, n in errors.most_common()) or 'none'}",
        f"present ({len(present)} of {len(report['roots'])} roots): {', '.join(present) or '-'}",
        f"absent: {', '.join(absent) or '-'}",
    ]
    if hidden:
        lines.append(f"some roots could not be looked into ({', '.join(hidden)}): run as root for debugfs")
    if report["truncated"]:
        lines.append(f"STOPPED EARLY: {report['stopped']}")
    lines.append("attach the file to the issue; it holds names, modes and the first bytes of each value, nothing else")
    return "\n".join(lines)


def _write_atomically(out: Path, text: str) -> None:
    """A reader (or a second run) never sees half a report."""
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
