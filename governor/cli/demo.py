"""`governor demo`: watch the governor pick operating points as budgets and background load change.

Without ``--endpoint`` it starts ``governor serve`` itself (on the embedded default: the host, or
``--board sim:NAME``) on a private ipc socket, waits for it, and stops it at the end, so one command
shows the whole product. Requests cycle through budget phases (relaxed, tight, accuracy floor,
energy-minded) while a background CPU load comes and goes (real busy-loop processes on the host;
on a simulated board the simulator's own co-runner scenario). Each line shows the budget, the
chosen point, what was predicted and what was measured.

"Met" is judged by the demo from the end-to-end time it prints: on the host, the round trip the demo
itself timed around each call; on a simulated board, the simulated run (a client that waits on each
reply queues nothing, and the host's own time around a simulated run is no part of the simulated
board). The summary counts every request, and names why the daemon judged some budgets infeasible.

Ctrl-C (or SIGTERM/SIGHUP) ends it with one line and exit code 130: the background load and the
daemon run in their own sessions, so the terminal's signal reaches only the demo, which stops them
(the daemon with SIGINT: it puts the board back as on any stop).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from governor.cli import CliError

PHASES = (  # (name, deadline_ms factor of the slowest point, min_accuracy, objective)
    ("relaxed", 4.0, None, "max_accuracy"),
    ("tight", 0.6, None, "min_energy"),
    ("accuracy floor", 1.5, "high", "min_energy"),
    ("energy", 2.0, None, "min_energy"),
)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", help="use a running daemon instead of starting one")
    parser.add_argument("--board", default="auto", help="for the daemon it starts: NAME, auto or sim:NAME")
    parser.add_argument("--model", help="for the daemon it starts: model file (default: bundled)")
    parser.add_argument("--requests", type=int, default=80, metavar="N", help="how many requests (default 80)")
    parser.add_argument("--load", type=int, default=-1, metavar="P",
                        help="background busy processes at peak (default: all CPUs but one; 0 = none)")
    parser.add_argument("--json", action="store_true", help="one JSON object per request instead of a table")
    parser.set_defaults(func=run)


# A busy loop that also ends once the demo is gone (its parent changes) or at its horizon.
_BURN = ("import os, sys, time\n"
         "parent, stop_at = int(sys.argv[1]), float(sys.argv[2])\n"
         "while time.time() < stop_at and os.getppid() == parent:\n"
         "    for _ in range(100_000):\n"
         "        pass\n")
_STOP_WAIT_S = 30.0  # a daemon that has not stopped by then is killed


@dataclass
class _Load:
    """Real background load on the host: busy-loop processes started and stopped per phase. Each runs in
    its own session, so a Ctrl-C at the terminal reaches the demo alone, which stops them."""

    procs: list[subprocess.Popen[bytes]]

    def set(self, n: int, horizon_s: float = 600.0) -> None:
        while len(self.procs) > n:
            proc = self.procs.pop()
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        while len(self.procs) < n:
            cmd = [sys.executable, "-S", "-c", _BURN, str(os.getpid()), str(time.time() + horizon_s)]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True))

    def stop(self) -> None:
        self.set(0)


@dataclass(frozen=True)
class Outcome:
    """One request as the demo saw it: the end-to-end time it printed (ms), the budget, the accuracy of
    the chosen point, and whether (and why) the daemon judged the budget infeasible."""

    e2e_ms: float
    deadline_ms: float | None
    min_accuracy: float | None = None
    accuracy: float | None = None
    infeasible: bool = False
    reason: str = ""

    @property
    def met(self) -> bool:
        on_time = self.deadline_ms is None or self.e2e_ms <= self.deadline_ms
        accurate = self.min_accuracy is None or (self.accuracy is not None and self.accuracy >= self.min_accuracy)
        return on_time and accurate


def _reason_kind(reason: str) -> str:
    """The reason with its figures blanked, so that one cause with different numbers groups as one."""
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", reason)


def summary(outcomes: Sequence[Outcome], label: str = "") -> list[str]:
    """The closing lines: every request counted, feasible ones against those the daemon judged infeasible
    (grouped by reason, most frequent first, each with its first example), met as the rows print it."""
    total = len(outcomes)
    met = sum(o.met for o in outcomes)
    feasible = [o for o in outcomes if not o.infeasible]
    infeasible = [o for o in outcomes if o.infeasible]
    f_met = sum(o.met for o in feasible)
    lines = [f"{total} requests: {met} met their budget end to end ({100.0 * met / max(total, 1):.1f} %){label}",
             f"  {len(feasible)} with a budget the daemon judged feasible: {f_met} met it "
             f"({100.0 * f_met / max(len(feasible), 1):.1f} %)"]
    if infeasible:
        anyway = sum(o.met for o in infeasible)
        lines.append(f"  {len(infeasible)} the daemon judged infeasible (served best effort; {anyway} met anyway):")
        groups: dict[str, list[Outcome]] = {}
        for o in infeasible:
            groups.setdefault(_reason_kind(o.reason or "no reason given"), []).append(o)
        for members in sorted(groups.values(), key=len, reverse=True):
            example = members[0].reason or "no reason given"
            alike = len({o.reason for o in members}) > 1  # the same cause with other figures
            lines.append(f"    {len(members):>4} x {example}" + (" (and alike)" if alike else ""))
    return lines


def _start_daemon(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    endpoint = f"ipc://{workdir / 'governor.sock'}"
    cmd = [sys.executable, "-m", "governor", "serve", "--endpoint", endpoint, "--board", args.board,
           "--state-file", str(workdir / "baseline.json")]
    if args.model:
        cmd += ["--model", args.model]
    print(f"starting: {' '.join(cmd[2:])}", flush=True)
    # Its own session: a Ctrl-C at the terminal reaches only the demo, which stops the daemon itself.
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, start_new_session=True), endpoint


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> str:
    """Stop the daemon as Ctrl-C would (it restores the board on SIGINT, also while starting); '' when it
    stopped cleanly, else what happened and what to do."""
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGINT)
        try:
            daemon.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
            return f"the daemon did not stop within {_STOP_WAIT_S:.0f} s and was killed"
    if daemon.returncode not in (0, 130):
        return f"the daemon exited with code {daemon.returncode} (see its messages above)"
    return ""


def _connect(endpoint: str, daemon: subprocess.Popen[bytes] | None) -> Any:
    from governor_client import Client, GovernorError

    # The daemon we started is waited for as long as it lives: its first start may profile for minutes,
    # saying how far it is and how long is left.
    while True:
        if daemon is not None and daemon.poll() is not None:
            raise CliError(f"the daemon exited with code {daemon.returncode}; see its messages above")
        try:
            client = Client(endpoint, timeout_ms=60_000, retries=1)
            client.connect()
            return client
        except GovernorError as exc:
            if daemon is None:  # the user's endpoint: say what is wrong instead of waiting
                raise CliError(str(exc)) from exc
            time.sleep(0.5)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM and SIGHUP take the same way out as Ctrl-C: load and daemon stopped


def run(args: argparse.Namespace) -> int:
    if args.requests < 1:
        raise CliError("--requests must be at least 1")
    from governor_client import GovernorError

    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    previous.update({sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)})
    workdir = Path(tempfile.mkdtemp(prefix="governor-demo-"))
    daemon: subprocess.Popen[bytes] | None = None
    load = _Load([])
    interrupted = False
    try:
        daemon, endpoint = (None, args.endpoint) if args.endpoint else _start_daemon(args, workdir)
        client = _connect(endpoint, daemon)
        with client:
            return _stream(client, args, load)
    except KeyboardInterrupt:
        interrupted = True
        return 130
    except GovernorError as exc:  # the daemon went away or refused mid-demo
        raise CliError(f"{exc}") from exc
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        try:
            _clean_up(load, daemon, workdir, interrupted)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _clean_up(load: _Load, daemon: subprocess.Popen[bytes] | None, workdir: Path, interrupted: bool) -> None:
    """Stop the load and the daemon; one line on stderr if interrupted or if the board may be left changed."""
    load.stop()
    trouble = _stop_daemon(daemon) if daemon is not None else ""
    state = workdir / "baseline.json"
    if state.exists():  # the daemon removes it once it has put the board back
        trouble += ("; " if trouble else "") + f"put the board back with `governor restore --state-file {state}`"
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    done = "background load stopped" + (", daemon stopped and board put back" if daemon is not None else "")
    if interrupted:
        print(f"governor demo: interrupted; {trouble or done}", file=sys.stderr, flush=True)
    elif trouble:
        print(f"governor demo: {trouble}", file=sys.stderr, flush=True)


def _stream(client: Any, args: argparse.Namespace, load: _Load) -> int:
    import numpy as np

    hello = client.connect()
    simulated = hello.simulated
    profiles = client.profiles().profiles[0]
    accuracy = [a for a in profiles.accuracy if a is not None]
    high = sorted(accuracy)[-2] if len(accuracy) > 1 else None
    images, labels = _inputs(args)
    slowest = client.advise(objective="max_accuracy").predicted.latency_ms
    peak = (os.cpu_count() or 2) - 1 if args.load < 0 else args.load
    label = " [SIMULATED]" if simulated else ""
    print(f"board {hello.board}{label}: {len(accuracy)} group counts, accuracy {accuracy}")
    header = f"{'#':>4} {'phase':<15}{'load':>5} {'deadline':>9} {'floor':>6}  {'point':<34}{'pred ms':>8}" \
             f"{'run ms':>8}{'e2e ms':>8}{'energy mJ':>10}  met"
    if not args.json:
        print(header)
    correct = 0
    outcomes: list[Outcome] = []
    per_phase = max(1, args.requests // (len(PHASES) * 2))
    for i in range(args.requests):
        phase_no = (i // per_phase) % len(PHASES)
        name, factor, floor, objective = PHASES[phase_no]
        busy = peak if (i // (per_phase * len(PHASES))) % 2 == 1 and not simulated else 0
        load.set(busy)
        deadline = round(slowest * factor, 3)
        min_acc = high if floor == "high" else None
        x = images[i % len(images)][None]
        sent = time.perf_counter()
        r = client.infer(x, deadline_ms=deadline, min_accuracy=min_acc, objective=objective)
        round_trip_ms = (time.perf_counter() - sent) * 1000.0
        correct += labels is not None and int(np.argmax(next(iter(r.outputs.values())))) == labels[i % len(labels)]
        reason = _why_infeasible(client, deadline, min_acc, objective) if r.budget_infeasible else ""
        # The end-to-end time budget_met compares (arrival to reply, from the daemon); an older daemon
        # sends none: then the round trip on the host, the simulated run on a sim board.
        e2e = r.total_ms if r.total_ms is not None else (r.measured.latency_ms if r.simulated else round_trip_ms)
        outcome = Outcome(e2e, deadline, min_acc, r.measured.accuracy, r.budget_infeasible, reason)
        outcomes.append(outcome)
        _print_row(args, i, name, busy, outcome, r)
    print()
    for line in summary(outcomes, label):
        print(line)
    if labels is not None:
        print(f"{correct} of {args.requests} digits classified correctly (real inference on this machine)")
    return 0


def _inputs(args: argparse.Namespace) -> tuple[Any, Any]:
    """Real images for the model: scikit-learn's digits for the bundled model, else random data."""
    import numpy as np

    if args.model:
        from governor.core.modelmeta import read_model_meta

        with open(args.model, "rb") as fh:
            shape = read_model_meta(fh).input_shape
        if tuple(shape) != (1, 8, 8):
            return np.random.default_rng(0).random((16, *shape), dtype=np.float32), None
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32)[:, None], digits.target


def _why_infeasible(client: Any, deadline: float, min_acc: float | None, objective: str) -> str:
    """The daemon's reason, asked at once with the same budget in strict mode (an infer reply carries none)."""
    from governor_client import GovernorError

    try:
        client.advise(deadline_ms=deadline, min_accuracy=min_acc, objective=objective, strict=True)
    except GovernorError as exc:
        if exc.code != "infeasible":
            return f"not known ({exc})"
        text: str = exc.message.removeprefix("no operating point meets the budget: ")
        return text.removesuffix("; relax the budget or drop strict")
    return "feasible when asked again at once (so: its wait in the daemon, or the load then)"


def _print_row(args: argparse.Namespace, i: int, name: str, busy: int, o: Outcome, r: Any) -> None:
    pt = r.point
    clocks = ",".join(f"{d}={hz / 1e6:.0f}" for d, hz in pt.setpoints_hz.items())
    point = f"{pt.mapping.unit}x{pt.mapping.threads} k={pt.k} {clocks}"[:33]
    energy = r.measured.energy_mj
    if args.json:
        import json

        print(json.dumps({"i": i, "phase": name, "load": busy, "deadline_ms": o.deadline_ms,
                          "min_accuracy": o.min_accuracy, "point": pt.model_dump(),
                          "predicted_ms": r.predicted.latency_ms, "measured_ms": r.measured.latency_ms,
                          "e2e_ms": o.e2e_ms, "met": o.met, "energy_mj": energy, "budget_met": r.budget_met,
                          "budget_infeasible": r.budget_infeasible, "infeasible_reason": o.reason,
                          "simulated": r.simulated}), flush=True)
        return
    mark = ("yes" if o.met else "NO") + (" (infeasible)" if o.infeasible else "")
    print(f"{i:>4} {name:<15}{busy:>5} {o.deadline_ms:>9.3f} {o.min_accuracy or 0:>6.3f}  {point:<34}"
          f"{r.predicted.latency_ms:>8.3f}{r.measured.latency_ms:>8.3f}{o.e2e_ms:>8.3f}"
          f"{'-' if energy is None else f'{energy:.3f}':>10}  {mark}", flush=True)
