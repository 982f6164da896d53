"""Daemon RPC speed against a bare pyzmq echo (issue 16), plus throughput, idle CPU and RSS.

Two servers run side by side, each in its own process, on ipc sockets of this machine:

- ``governor serve`` (by default the host board with the bundled digits model; ``--board
  sim:jetson-nano`` for a simulated board), and
- a bare pyzmq ROUTER that echoes every message back (no codec, no daemon): the floor.

One client in this process then interleaves blocks of ``--block`` calls (default 50) of each kind,
the kinds' order rotated per block, for ``--blocks`` rounds, once back to back and once with
``--gap-ms`` (default 5) between calls. This VM's speed drifts by half within a minute: figures
taken one after the other compare its moods, interleaved blocks compare the servers. Kinds:

- ``echo``: the advise request's bytes to the echo server and back (DEALER, poll, recv);
- ``advise``: ``governor_client.Client.advise`` (encode, send, poll, recv, decode, match);
- ``advise raw``: the same pre-encoded advise frames to the daemon over a bare DEALER, reply not
  decoded: the daemon's share without the client library's;
- ``infer``: ``Client.infer`` of one 8x8 input (max_accuracy), and ``exec``: the in-process
  executor at the point the daemon chose, with the same pauses. The daemon reports its own run
  (``measured.latency_ms``), so ``infer - measured`` is the daemon's overhead on exactly that run.

Targets: (a) advise p50 <= 2 x echo p50, back to back and at the gap; (b) infer p50 minus exec
p50 <= 1.5 x advise p50. Figures only: nothing here asserts a timing.

``--light`` (issue 18.8, 18.9): the light daemon an application that owns its engine runs
(``governor serve --engine external``): with a profile in place, the time from exec to the first
answered ``hello``, its RSS, whether torch was mapped at all, and one lease (acquire + release)
against two echo round trips, interleaved; then a stream's cost per frame in the application (reading
the current k and reporting the frame, batches sent every 16 frames) against an advise per frame, 5 ms
apart.

Run: python benchmarks/rpc.py [--blocks 40] [--block 50] [--gap-ms 5] [--settle-ms 20] [--board sim:jetson-nano]
     [--clients 2] [--seconds 5] [--idle-s 10] [--model FILE.dgm] [--skip-infer] [--light]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq
from governor_client import Client

from governor.core import protocol as p
from governor.daemon.config import default_state_dir

_ADVISE = p.AdviseRequest(budget=p.Budget(deadline_ms=5.0))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(workdir: Path, model: Path | None = None, board: str | None = None,
          ) -> tuple[subprocess.Popen[str], str]:
    endpoint = f"ipc://{workdir}/g.sock"
    env = {**os.environ, "STATE_DIRECTORY": str(default_state_dir())}
    proc = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--endpoint", endpoint,
                             "--state-file", str(workdir / "state.json"),
                             *(["--model", str(model)] if model else []),
                             *(["--board", board] if board else [])], env=env,
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


def _echo_server(endpoint: str) -> None:
    sock = zmq.Context().socket(zmq.ROUTER)
    sock.bind(endpoint)
    while (parts := sock.recv_multipart(copy=False))[-1].bytes != b"stop":
        sock.send_multipart(parts, copy=False)


def start_echo(workdir: Path) -> tuple[mp.process.BaseProcess, str]:
    endpoint = f"ipc://{workdir}/echo.sock"
    proc = mp.get_context("spawn").Process(target=_echo_server, args=(endpoint,), daemon=True)
    proc.start()
    return proc, endpoint


def raw_caller(sock: zmq.Socket[bytes], frames: list[p.Frame]) -> Callable[[], None]:
    """One round trip of ``frames`` on a bare DEALER: send, poll, recv (as the client's transport does)."""
    msg = [b"", *frames]

    def call() -> None:
        sock.send_multipart(msg, copy=False)
        if not sock.poll(5000, zmq.POLLIN):
            raise SystemExit("no reply within 5 s")
        sock.recv_multipart(copy=False)
    return call


def interleaved(kinds: dict[str, Callable[[], object]], blocks: int, block: int, gap_s: float,
                settle_s: float = 0.0) -> dict[str, list[float]]:
    """Round trip (us) of every kind, in blocks of ``block`` calls, kinds rotated per block; ``gap_s`` of
    sleep before each call (not timed), ``settle_s`` before each block.

    The settle pause outlasts the daemon's busy-poll window (5 ms after its last message), so each
    kind runs with nothing spinning beside it. Without it, the echo block that follows a daemon block
    ran while the daemon still spun on the other core, and on this 2-core VM a core kept out of its
    idle state halves a round trip (measured: a bare echo takes 115 us alone, 47 us next to a spinning
    process)."""
    names = list(kinds)
    out: dict[str, list[float]] = {n: [] for n in names}
    for b in range(blocks):
        for name in names[b % len(names):] + names[:b % len(names)]:
            call, times = kinds[name], out[name]
            if settle_s:
                time.sleep(settle_s)
            call()  # the first of a block pays for the switch from the other kind; not counted
            for _ in range(block):
                if gap_s:
                    time.sleep(gap_s)
                t = time.perf_counter_ns()
                call()
                times.append((time.perf_counter_ns() - t) / 1e3)
    return out


def pct(xs: list[float]) -> tuple[float, float, float]:
    a, b, c = np.percentile(xs, [50, 90, 99])
    return float(a), float(b), float(c)


def report(title: str, figures: dict[str, list[float]]) -> None:
    print(title)
    for name, xs in figures.items():
        p50, p90, p99 = pct(xs)
        print(f"  {name:<11} p50 {p50:8.0f} us  p90 {p90:8.0f} us  p99 {p99:8.0f} us  ({len(xs)} calls)")


def advise_vs_echo(endpoint: str, echo: str, blocks: int, block: int, gap_s: float, settle_s: float,
                   ) -> dict[str, list[float]]:
    ctx = zmq.Context.instance()
    socks = []
    for ep in (echo, endpoint):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(ep)
        socks.append(s)
    frames = p.encode_request(_ADVISE)
    with Client(endpoint, timeout_ms=5000, retries=0) as c:
        kinds: dict[str, Callable[[], object]] = {
            "echo": raw_caller(socks[0], frames),
            "advise": lambda: c.advise(deadline_ms=5.0),
            "advise raw": raw_caller(socks[1], frames),
        }
        for call in kinds.values():
            for _ in range(200):
                call()
        out = interleaved(kinds, blocks, block, gap_s, settle_s)
    for s in socks:
        s.close(0)
    return out


def infer_vs_exec(endpoint: str, model: Path | None, blocks: int, block: int, gap_s: float, settle_s: float,
                  ) -> tuple[dict[str, list[float]], list[float]]:
    """Round trips of infer and of the in-process executor at the same point (us), and the daemon's own
    measured run of each infer (us)."""
    import torch

    from governor.runtime.executor import Executor

    x = np.zeros((1, 1, 8, 8), np.float32)
    model = model or next((default_state_dir() / "models").glob("*.dgm"))
    measured: list[float] = []
    with Client(endpoint, timeout_ms=10000, retries=0) as c, Executor(model) as ex:
        point = c.infer(x, objective="max_accuracy").point
        threads = point.mapping.threads
        torch.set_num_threads(threads)

        def infer() -> None:
            measured.append(c.infer(x, objective="max_accuracy").measured.latency_ms * 1e3)

        kinds: dict[str, Callable[[], object]] = {"infer": infer, "exec": lambda: ex.run(x, point.k, threads=threads)}
        for call in kinds.values():
            for _ in range(100):
                call()
        measured.clear()
        out = interleaved(kinds, blocks, block, gap_s, settle_s)
    return out, measured


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


def light_daemon(workdir: Path, model: Path, echo: str, rounds: int) -> None:
    """The external-engine daemon: start-up after a profile exists, RSS, torch mapped or not, lease cost."""
    profile = workdir / "light-profile.json"
    subprocess.run([sys.executable, "-m", "governor", "profile", str(model), "--board", "host", "--out", str(profile),
                    "--force", "--quiet"], check=True, capture_output=True)
    endpoint = f"ipc://{workdir}/light.sock"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--engine", "external", "--model", str(model),
                             "--profile", str(profile), "--endpoint", endpoint, "--state-file",
                             str(workdir / "light-state.json")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with Client(endpoint, timeout_ms=200, retries=0) as c:
                    c.status()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() - started > 60:
                    raise SystemExit("the light daemon did not come up") from None
                time.sleep(0.01)
        up_s = time.monotonic() - started
        time.sleep(1.0)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        torch_mapped = "libtorch" in maps
        print(f"light daemon (engine = external, profile present): first status answered {up_s:.2f} s after exec "
              f"(target <= 1 s); RSS {rss_mb(proc.pid):.0f} MB (target <= 80 MB); torch mapped: {torch_mapped}")
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.connect(echo)
        echo_call = raw_caller(sock, p.encode_request(_ADVISE))
        with Client(endpoint, timeout_ms=5000, retries=0) as c:
            def lease() -> None:
                got = c.acquire(deadline_ms=50.0)
                c.release(got, 1.0)

            def two_echoes() -> None:
                echo_call()
                echo_call()

            figures = interleaved({"two echoes": two_echoes, "acquire+release": lease}, rounds, 50, 0.0)
        sock.close(0)
        report("a lease (acquire then release, back to back) against two bare echo round trips:", figures)
        e50, l50 = pct(figures["two echoes"])[0], pct(figures["acquire+release"])[0]
        print(f"  acquire+release p50 - two echoes p50 = {l50 - e50:.0f} us (the daemon's own cost per lease, "
              "the setpoint write included where clocks change)")
        for gap_ms in (0.0, 5.0):
            stream_frames(endpoint, rounds, gap_ms)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def stream_frames(endpoint: str, rounds: int, gap_ms: float = 5.0) -> None:
    """Issue 18.7/18.9: what one frame of a stream costs the application (read the current k, report the
    frame; every 16th frame sends the batch), against asking the daemon per frame with advise, interleaved,
    with ``gap_ms`` between frames as a camera pipeline has them."""
    with Client(endpoint, timeout_ms=5000, retries=0) as c, c.stream(period_ms=33.0, deadline_ms=30.0) as s:
        def frame() -> None:
            _k = s.k
            s.report(1.0)

        def advise() -> None:
            c.advise(deadline_ms=30.0)

        figures = interleaved({"stream frame": frame, "advise": advise}, rounds, 48, gap_ms / 1e3)
    label = "back to back" if not gap_ms else f"{gap_ms:g} ms apart"
    report(f"per frame in the application, {label}: a stream's k and report against an advise round trip:", figures)
    mean = float(np.mean(figures["stream frame"]))
    counted = s.closed.frames if s.closed else 0
    print(f"  stream frame mean {mean:.1f} us, batches included (target <= 20 us); the daemon counted {counted} "
          f"frames of the {len(figures['stream frame']) + rounds} reported")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blocks", type=int, default=40, help="rounds of blocks per gap (default 40)")
    ap.add_argument("--block", type=int, default=50, help="calls of one kind in a row (default 50)")
    ap.add_argument("--gap-ms", type=float, default=5.0, help="pause before each call in the paced run")
    ap.add_argument("--settle-ms", type=float, default=20.0,
                    help="pause before each block, past the daemon's 5 ms busy-poll window (0: the protocol "
                         "before 2026-12-04, where an echo block could run beside the daemon still spinning)")
    ap.add_argument("--board", help="the daemon's --board (default: the host)")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0, help="throughput run (0 skips it)")
    ap.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (0 skips it)")
    ap.add_argument("--model", type=Path, help="a model file to serve instead of the bundled one (8x8 inputs)")
    ap.add_argument("--skip-infer", action="store_true", help="advise against echo only")
    ap.add_argument("--light", action="store_true", help="only the light (engine = external) daemon's figures")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="governor-rpc-"))
    echo_proc, echo = start_echo(workdir)
    if args.light:
        try:
            light_daemon(workdir, args.model or _bundled(), echo, max(args.blocks // 4, 2))
        finally:
            _stop_echo(echo, echo_proc)
        return
    proc, endpoint = start(workdir, args.model, args.board)
    try:
        advise: dict[float, float] = {}
        for gap_ms in (0.0, args.gap_ms):
            figures = advise_vs_echo(endpoint, echo, args.blocks, args.block, gap_ms / 1e3, args.settle_ms / 1e3)
            label = "back to back" if not gap_ms else f"{gap_ms:g} ms apart"
            report(f"advise against a bare pyzmq echo over ipc, {label}, interleaved blocks of {args.block} "
                   f"({args.settle_ms:g} ms settle before each):",
                   figures)
            e50, a50, r50 = (pct(figures[k])[0] for k in ("echo", "advise", "advise raw"))
            advise[gap_ms] = a50
            print(f"  ratio advise / echo p50 = {a50 / e50:.2f} (target <= 2); advise raw / echo = {r50 / e50:.2f}; "
                  f"p99 advise / echo = {pct(figures['advise'])[2] / pct(figures['echo'])[2]:.2f}")
        if not args.skip_infer:
            for gap_ms in (0.0, args.gap_ms):
                figures, measured = infer_vs_exec(endpoint, args.model, max(args.blocks // 2, 1), args.block,
                                                  gap_ms / 1e3, args.settle_ms / 1e3)
                label = "back to back" if not gap_ms else f"{gap_ms:g} ms apart"
                report(f"infer against the in-process executor, {label}:", figures)
                i50, x50, m50 = pct(figures["infer"])[0], pct(figures["exec"])[0], pct(measured)[0]
                over = i50 - x50
                print(f"  infer - exec p50 = {over:.0f} us = {over / advise[gap_ms]:.2f} x advise p50 "
                      f"({advise[gap_ms]:.0f} us; target <= 1.5); the daemon's own run p50 {m50:.0f} us, "
                      f"infer - that = {i50 - m50:.0f} us = {(i50 - m50) / advise[gap_ms]:.2f} x advise")
        if args.seconds > 0:
            rate = throughput(endpoint, args.clients, args.seconds)
            print(f"advise throughput, {args.clients} clients: {rate:,.0f} requests/s (target >= 5,000)")
        if args.idle_s > 0:
            time.sleep(1.0)
            c0, t0 = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.idle_s)
            idle = (cpu_seconds(proc.pid) - c0) / (time.monotonic() - t0)
            print(f"idle daemon at 10 Hz sampling: {100 * idle:.2f} % of one core (target <= 1 %); "
                  f"RSS {rss_mb(proc.pid):.0f} MB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        _stop_echo(echo, echo_proc)


def _stop_echo(echo: str, echo_proc: mp.process.BaseProcess) -> None:
    stop = zmq.Context.instance().socket(zmq.DEALER)
    stop.connect(echo)
    stop.send_multipart([b"", b"stop"])
    echo_proc.join(10)
    stop.close(0)


def _bundled() -> Path:
    from governor.runtime.bundled import ensure_default_model

    return ensure_default_model(default_state_dir() / "models")


if __name__ == "__main__":
    main()
