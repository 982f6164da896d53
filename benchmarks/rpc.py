"""Daemon RPC figures on this machine: advise round trip, throughput, infer overhead, idle CPU and RSS.

Starts `governor serve` on the host (the embedded default, bundled digits model) as a subprocess on
a private ipc socket, then measures from a client in this process:

- advise round trip over ipc: p50 / p99 of N sequential calls (targets: p50 <= 150 us, p99 <= 500 us);
- advise throughput with C concurrent clients (target: >= 5,000 requests/s);
- infer overhead: daemon round trip minus the executor's own latency for the same point, measured
  on the same inputs in this process (target: <= 5 % + 200 us);
- idle daemon: CPU time over an idle window at 10 Hz sampling (target: <= 1 % of one core), and RSS;
- the floor under those figures on this machine: a bare pyzmq ROUTER/DEALER echo between two
  processes (no codec, no daemon), and the executor in-process with 1 ms pauses between runs, as the
  daemon sees them (a core that slept runs the same forward pass slower).

Run: python benchmarks/rpc.py [--calls 5000] [--clients 2] [--idle-s 10] [--model FILE.dgm]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from governor_client import Client

from governor.daemon.config import default_state_dir


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(workdir: Path, model: Path | None = None) -> tuple[subprocess.Popen[str], str]:
    endpoint = f"ipc://{workdir}/g.sock"
    env = {**os.environ, "STATE_DIRECTORY": str(default_state_dir())}
    proc = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--endpoint", endpoint,
                             "--state-file", str(workdir / "state.json"),
                             *(["--model", str(model)] if model else [])], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"daemon exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            with Client(endpoint, timeout_ms=1000, retries=0) as c:
                c.status()
            return proc, endpoint
        except Exception:
            time.sleep(0.5)
    raise SystemExit("daemon did not come up in 300 s")


def advise_latency(endpoint: str, calls: int) -> list[float]:
    out = []
    with Client(endpoint, timeout_ms=5000, retries=0) as c:
        for _ in range(200):
            c.advise(deadline_ms=5.0)
        for _ in range(calls):
            t = time.perf_counter_ns()
            c.advise(deadline_ms=5.0)
            out.append((time.perf_counter_ns() - t) / 1e3)
    return out


def throughput(endpoint: str, clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        with Client(endpoint, timeout_ms=5000, retries=0) as c:
            while time.monotonic() < stop:
                c.advise(deadline_ms=5.0)
                counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.monotonic() - t0)


def infer_overhead(endpoint: str, reps: int, model: Path | None = None, pause_s: float = 0.001, block: int = 50,
                   ) -> tuple[float, float, float]:
    """Median daemon round trip, and median in-process executor latency at the same point back to back and
    with ``pause_s`` between runs (as the daemon runs it, after a wait), all in ms.

    The three are measured in interleaved blocks of ``block`` calls: this VM's speed drifts by half within
    a minute, and figures taken one after the other compared its moods, not the daemon with the executor."""
    import torch

    from governor.runtime.executor import Executor

    x = np.zeros((1, 1, 8, 8), np.float32)
    model = model or next((default_state_dir() / "models").glob("*.dgm"))
    rtt: list[float] = []
    direct: list[float] = []
    paused: list[float] = []
    with Client(endpoint, timeout_ms=10000, retries=0) as c, Executor(model) as ex:
        point = c.infer(x, objective="max_accuracy").point
        torch.set_num_threads(point.mapping.threads)
        for _ in range(max(1, reps // block)):
            for _ in range(block):
                t = time.perf_counter_ns()
                c.infer(x, objective="max_accuracy")
                rtt.append((time.perf_counter_ns() - t) / 1e6)
            for _ in range(block):
                direct.append(ex.run(x, point.k, threads=point.mapping.threads).latency_ms)
            for _ in range(block):
                time.sleep(pause_s)
                paused.append(ex.run(x, point.k, threads=point.mapping.threads).latency_ms)
    return statistics.median(rtt), statistics.median(direct), statistics.median(paused)


def _echo_server(endpoint: str) -> None:
    import zmq

    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(endpoint)
    while (parts := sock.recv_multipart())[-1] != b"stop":
        sock.send_multipart(parts)


def zmq_floor(workdir: Path, calls: int) -> tuple[float, float]:
    """p50 / p99 (us) of a bare pyzmq echo between two processes over ipc: the round trip's floor."""
    import multiprocessing as mp

    import zmq

    endpoint = f"ipc://{workdir}/echo.sock"
    proc = mp.get_context("spawn").Process(target=_echo_server, args=(endpoint,))
    proc.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(endpoint)
    msg = [b"", b'{"v":"1.0","type":"advise","id":"","budget":{"deadline_ms":5.0}}']
    out = []
    for i in range(calls + 200):
        t = time.perf_counter_ns()
        sock.send_multipart(msg)
        sock.recv_multipart()
        if i >= 200:
            out.append((time.perf_counter_ns() - t) / 1e3)
    sock.send_multipart([b"", b"stop"])
    proc.join(10)
    sock.close(0)
    p50, p99 = np.percentile(out, [50, 99])
    return float(p50), float(p99)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--idle-s", type=float, default=10.0)
    ap.add_argument("--model", type=Path, help="a model file to serve instead of the bundled one (8x8 inputs)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="governor-rpc-"))
    proc, endpoint = start(workdir, args.model)
    try:
        lat = np.array(advise_latency(endpoint, args.calls))
        p50, p99 = np.percentile(lat, [50, 99])
        print(f"advise round trip over ipc: p50 = {p50:.0f} us, p99 = {p99:.0f} us over {args.calls} calls "
              "(targets 150 / 500 us)")
        rate = throughput(endpoint, args.clients, args.seconds)
        print(f"advise throughput, {args.clients} clients: {rate:,.0f} requests/s (target >= 5,000)")
        rtt, direct, paused = infer_overhead(endpoint, 600, args.model)
        over = rtt - direct
        print(f"infer: daemon round trip {rtt:.3f} ms vs executor in-process {direct:.3f} ms: overhead "
              f"{over * 1000:.0f} us = {100 * over / direct:.1f} % (target <= 5 % + 200 us = "
              f"{(0.05 * direct + 0.2) * 1000:.0f} us)")
        print(f"  the same executor in-process with 1 ms pauses between runs: {paused:.3f} ms; against that, "
              f"the daemon adds {(rtt - paused) * 1000:.0f} us")
        f50, f99 = zmq_floor(workdir, args.calls)
        print(f"floor: bare pyzmq echo between two processes over ipc: p50 = {f50:.0f} us, p99 = {f99:.0f} us")
        time.sleep(1.0)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle_s)
        idle = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
        print(f"idle daemon at 10 Hz sampling: {100 * idle:.2f} % of one core (target <= 1 %); "
              f"RSS {rss_mb(proc.pid):.0f} MB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
