"""Soak the daemon over ipc: N clients x M requests, bounded in count and time.

The daemon runs as ``python -m governor serve`` on a fake host tree without cpufreq (like this VM:
no DVFS, so it measures its small host table at start instead of profiling) with the real model.
Each client thread keeps one connection and sends its requests back to back: 80 % ``infer`` with
a random budget, 10 % ``advise``, 10 % ``status``. Completed requests are cut into windows in the
order they finished; each window reports its latency percentiles (client wall time, ms) and the
daemon's resident memory when it closed. RSS growth is measured from the end of the first window
(allocator and caches warm) to the end of the run.

Run: python benchmarks/soak.py [--clients 4] [--requests 25000] [--windows 10] [--max-seconds 1800]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DaemonProcess", "SoakReport", "host_tree", "rss_mib", "run_soak", "start_daemon"]


@dataclass
class DaemonProcess:
    """``python -m governor serve`` in a subprocess; its stdout and stderr go to ``log``."""

    proc: subprocess.Popen[bytes]
    endpoint: str
    state_file: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_serving(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "serving on" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon is not serving (exit {self.proc.poll()}):\n{self.output()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 60.0) -> int:
        self.proc.terminate()
        return self.proc.wait(timeout_s)


def start_daemon(work: Path, root: Path, model: Path, state_dir: Path, *, board: str,
                 config_text: str = "", name: str = "daemon") -> DaemonProcess:
    """Start ``governor serve`` on ``root`` with its socket, state file and log in ``work``."""
    endpoint = f"ipc://{work}/g.sock"
    state_file = work / "state.json"
    log = work / f"{name}.log"
    cmd = [sys.executable, "-m", "governor", "serve", "--endpoint", endpoint, "--board", board,
           "--sysfs-root", str(root), "--state-file", str(state_file), "--model", str(model)]
    if config_text:
        (work / "governor.toml").write_text(config_text)
        cmd += ["--config", str(work / "governor.toml")]
    env = {**os.environ, "STATE_DIRECTORY": str(state_dir), "RUNTIME_DIRECTORY": str(work)}
    for var in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(var, None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    return DaemonProcess(proc, endpoint, state_file, log)


def host_tree(root: Path) -> None:
    """A fake host without cpufreq policies (as in a VM): nothing to pin, so no profiling at start."""
    from governor.drivers.catalogue import load_board
    from governor.testing import make_fake_tree

    make_fake_tree(load_board("host"), root).vanish("sys/devices/system/cpu/cpufreq/policy*")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class SoakReport:
    asked: int
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    windows: list[tuple[int, float, float, float]] = field(default_factory=list)  # (requests, p50, p99, RSS MiB)

    @property
    def rss_growth(self) -> float:
        """Relative RSS growth from the end of the first window to the end of the run."""
        return self.windows[-1][3] / self.windows[0][3] - 1 if len(self.windows) > 1 else 0.0

    @property
    def p99_ratio(self) -> float:
        """p99 of the last window over p99 of the first (after warm-up)."""
        return self.windows[-1][2] / self.windows[0][2] if len(self.windows) > 1 else 1.0

    def lines(self) -> list[str]:
        out = [f"{'window':>6} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}"]
        for i, (n, p50, p99, rss) in enumerate(self.windows):
            out.append(f"{i:>6} {n:>9} {p50:>8.2f} {p99:>8.2f} {rss:>8.1f}")
        out.append(f"asked {self.asked}, answered {self.answered}, errors {self.errors or 0}, in {self.seconds:.1f} s "
                   f"({self.answered / max(self.seconds, 1e-9):.0f}/s); RSS growth after window 0: "
                   f"{self.rss_growth * 100:+.2f} %; p99 last/first window: {self.p99_ratio:.2f}")
        return out


def _client(endpoint: str, requests: int, seed: int, stop_at: float, done: list[tuple[float, float]],
            errors: dict[str, int], lock: threading.Lock) -> None:
    from governor_client import Client, GovernorError

    rng = random.Random(seed)
    x = np.random.default_rng(seed).uniform(0, 16, (1, 1, 8, 8)).astype(np.float32)
    with Client(endpoint, timeout_ms=30_000, retries=0) as client:
        for _ in range(requests):
            if time.monotonic() > stop_at:
                return
            roll = rng.random()
            started = time.monotonic()
            try:
                if roll < 0.8:
                    client.infer(x, deadline_ms=10 ** rng.uniform(0, 3), objective=rng.choice(
                        ["min_energy", "max_accuracy", "min_latency"]))
                elif roll < 0.9:
                    client.advise(deadline_ms=10 ** rng.uniform(0, 3))
                else:
                    client.status()
            except GovernorError as exc:
                with lock:
                    errors[exc.code] = errors.get(exc.code, 0) + 1
                continue
            ended = time.monotonic()
            with lock:
                done.append((ended, (ended - started) * 1000))


def _rss_sampler(pid: int, samples: list[tuple[float, float]], stop: threading.Event) -> None:
    while not stop.is_set():
        samples.append((time.monotonic(), rss_mib(pid)))
        stop.wait(0.25)


def run_soak(endpoint: str, pid: int, *, clients: int, requests: int, windows: int = 10,
             max_seconds: float = 1800.0, seed: int = 0) -> SoakReport:
    """``clients`` threads x ``requests`` each against the daemon at ``endpoint`` (process ``pid``)."""
    done: list[tuple[float, float]] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    rss: list[tuple[float, float]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_rss_sampler, args=(pid, rss, stop), daemon=True)
    sampler.start()
    start = time.monotonic()
    threads = [threading.Thread(target=_client, args=(endpoint, requests, seed + i, start + max_seconds, done,
                                                      errors, lock), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(max_seconds + 60)
    report = SoakReport(clients * requests, len(done), errors, time.monotonic() - start)
    rss.append((time.monotonic(), rss_mib(pid)))
    stop.set()
    sampler.join(5)
    done.sort()
    for chunk in np.array_split(np.arange(len(done)), windows):
        if len(chunk):
            lat = np.array([done[i][1] for i in chunk])
            closed = done[chunk[-1]][0]
            rss_then = max((r for t, r in rss if t <= closed), default=rss[0][1])
            report.windows.append((len(chunk), float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                                   rss_then))
    report.windows[-1] = (*report.windows[-1][:3], rss[-1][1])
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=25_000, help="per client")
    parser.add_argument("--windows", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--model", type=Path, help="model file (default: train the quick test model)")
    args = parser.parse_args(argv)
    from benchmarks.fuzz_daemon import train_quick_model

    with tempfile.TemporaryDirectory(prefix="gov-soak-") as tmp:
        work = Path(tmp)
        model = args.model or train_quick_model(work / "quick.dgm")
        host_tree(work / "root")
        daemon = start_daemon(work, work / "root", model, work / "state", board="host")
        try:
            daemon.wait_serving()
            report = run_soak(daemon.endpoint, daemon.proc.pid, clients=args.clients, requests=args.requests,
                              windows=args.windows, max_seconds=args.max_seconds)
        finally:
            code = daemon.terminate()
    print("\n".join(report.lines()))
    print(f"daemon exit code after SIGTERM: {code}")
    ok = report.answered == report.asked and not report.errors and report.rss_growth < 0.05 and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
