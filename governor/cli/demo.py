"""`governor demo`: watch the governor pick operating points as budgets and background load change.

Without ``--endpoint`` it starts ``governor serve`` itself (on the embedded default: the host, or
``--board sim:NAME``) on a private ipc socket, waits for it, and stops it at the end, so one command
shows the whole product. Requests cycle through budget phases (relaxed, tight, accuracy floor,
energy-minded) while a background CPU load comes and goes (real busy-loop processes on the host;
on a simulated board the simulator's own co-runner scenario). Each line shows the budget, the
chosen point, what was predicted and what was measured.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
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


def _burn(stop_at: float) -> None:  # pragma: no cover - runs in a child process
    while time.time() < stop_at:
        pass


@dataclass
class _Load:
    """Real background load on the host: busy-loop processes started and stopped per phase."""

    procs: list[Any]

    def set(self, n: int, horizon_s: float = 600.0) -> None:
        while len(self.procs) > n:
            self.procs.pop().terminate()
        ctx = mp.get_context("spawn")
        while len(self.procs) < n:
            proc = ctx.Process(target=_burn, args=(time.time() + horizon_s,), daemon=True)
            proc.start()
            self.procs.append(proc)

    def stop(self) -> None:
        self.set(0)


def _start_daemon(args: argparse.Namespace, workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    endpoint = f"ipc://{workdir / 'governor.sock'}"
    cmd = [sys.executable, "-m", "governor", "serve", "--endpoint", endpoint, "--board", args.board,
           "--state-file", str(workdir / "baseline.json")]
    if args.model:
        cmd += ["--model", args.model]
    print(f"starting: {' '.join(cmd[2:])}", flush=True)
    return subprocess.Popen(cmd), endpoint


def _connect(endpoint: str, daemon: subprocess.Popen[bytes] | None) -> Any:
    from governor_client import Client, GovernorError

    deadline = time.monotonic() + 300
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
            if time.monotonic() > deadline:
                raise CliError(f"no daemon answered at {endpoint} within 300 s") from None
            time.sleep(0.5)


def run(args: argparse.Namespace) -> int:
    if args.requests < 1:
        raise CliError("--requests must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="governor-demo-"))
    daemon, endpoint = (None, args.endpoint) if args.endpoint else _start_daemon(args, workdir)
    load = _Load([])
    try:
        client = _connect(endpoint, daemon)
        with client:
            return _stream(client, args, load)
    finally:
        load.stop()
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(30)
            except subprocess.TimeoutExpired:
                daemon.kill()


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
             f"{'meas ms':>8}{'energy mJ':>10}  met"
    if not args.json:
        print(header)
    met = feasible = correct = 0
    per_phase = max(1, args.requests // (len(PHASES) * 2))
    for i in range(args.requests):
        phase_no = (i // per_phase) % len(PHASES)
        name, factor, floor, objective = PHASES[phase_no]
        busy = peak if (i // (per_phase * len(PHASES))) % 2 == 1 and not simulated else 0
        load.set(busy)
        deadline = round(slowest * factor, 3)
        min_acc = high if floor == "high" else None
        x = images[i % len(images)][None]
        r = client.infer(x, deadline_ms=deadline, min_accuracy=min_acc, objective=objective)
        correct += labels is not None and int(np.argmax(next(iter(r.outputs.values())))) == labels[i % len(labels)]
        feasible += not r.budget_infeasible
        met += r.budget_met and not r.budget_infeasible
        _print_row(args, i, name, busy, deadline, min_acc, r)
    print(f"\n{met} of {feasible} requests with a feasible budget met it "
          f"({100.0 * met / max(feasible, 1):.1f} %){label}")
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


def _print_row(args: argparse.Namespace, i: int, name: str, busy: int, deadline: float, floor: float | None,
               r: Any) -> None:
    pt = r.point
    clocks = ",".join(f"{d}={hz / 1e6:.0f}" for d, hz in pt.setpoints_hz.items())
    point = f"{pt.mapping.unit}x{pt.mapping.threads} k={pt.k} {clocks}"[:33]
    energy = r.measured.energy_mj
    if args.json:
        import json

        print(json.dumps({"i": i, "phase": name, "load": busy, "deadline_ms": deadline, "min_accuracy": floor,
                          "point": pt.model_dump(), "predicted_ms": r.predicted.latency_ms,
                          "measured_ms": r.measured.latency_ms, "energy_mj": energy, "budget_met": r.budget_met,
                          "budget_infeasible": r.budget_infeasible, "simulated": r.simulated}), flush=True)
        return
    mark = "yes" if r.budget_met else ("n/a" if r.budget_infeasible else "NO")
    print(f"{i:>4} {name:<15}{busy:>5} {deadline:>9.3f} {floor or 0:>6.3f}  {point:<34}{r.predicted.latency_ms:>8.3f}"
          f"{r.measured.latency_ms:>8.3f}{'-' if energy is None else f'{energy:.3f}':>10}  {mark}", flush=True)
