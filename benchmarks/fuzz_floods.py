"""Connection floods and many-frame messages against the daemon over a real ipc socket, bounded.

The daemon is :func:`benchmarks.fuzz_daemon.open_fuzz_daemon`'s (real drivers on a fake host tree,
the real model) with the real :class:`~governor.transport.zmq_server.ZmqServerEnd`, its loop on a
thread. Each round picks a kind and a size (at most ``max_connections``):

* ``raw``: unix connections that never speak, held a moment, then closed;
* ``garbage``: the same, each sending random bytes (sometimes the start of a ZMTP greeting);
* ``dealers``: ZeroMQ DEALERs, which reconnect at once when the daemon cuts them;
* ``many_frames``: DEALERs sending messages over the limit in many small frames, or with too many frames,
  each of which must get one ``too_large``.

After every round: the daemon's loop has raised nothing, the guard never held more connections from
this process than its bound, and a fresh client's ``status`` is answered within 10 s.

Run through ``python benchmarks/fuzz_daemon.py --floods N``.
"""

from __future__ import annotations

import collections
import random
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from governor.core import protocol as p

__all__ = ["FLOOD_KINDS", "FloodHarness", "FloodReport", "run_floods", "run_floods_on_ipc"]

FLOOD_KINDS = ("raw", "garbage", "dealers", "many_frames")
ZMTP_GREETING_START = b"\xff" + b"\x00" * 8 + b"\x7f\x03"


@dataclass
class FloodReport:
    rounds: int = 0
    connections: int = 0
    most_held: int = 0  # the most connections the guard held from this process at once
    too_large: int = 0
    seconds: float = 0.0
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    findings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
        return [f"floods: {self.rounds} rounds ({kinds}), {self.connections} connections, at most "
                f"{self.most_held} held at once, {self.too_large} many-frame messages refused too_large, "
                f"in {self.seconds:.1f} s; findings {len(self.findings)}"]


class FloodHarness:
    """Runs ``daemon``'s loop on a thread while rounds of floods hit ``server`` (see the module doc)."""

    def __init__(self, daemon: Any, server: Any) -> None:
        self.daemon, self.server = daemon, server
        self.path = server.endpoint.removeprefix("ipc://")
        self.report = FloodReport()
        self.loop_error = ""
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._loop, name="fuzz-daemon-loop", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.daemon.step()
        except Exception:
            self.loop_error = traceback.format_exc(limit=6)

    def round(self, rng: random.Random, max_connections: int) -> None:
        kind = rng.choice(FLOOD_KINDS)
        n = rng.randint(1, max_connections)
        self.report.rounds += 1
        self.report.kinds[kind] += 1
        self.report.connections += n
        held: list[Any] = []
        try:
            if kind in ("raw", "garbage"):
                held = self._raw(rng, n, kind == "garbage")
            elif kind == "dealers":
                held = self._dealers(n)
            else:
                self._many_frames(rng, min(n, 8))
            time.sleep(rng.uniform(0, 0.2))
            self._check_bounds(kind, n)
        finally:
            for s in held:
                s.close() if isinstance(s, socket.socket) else s.close(linger=0)
        self._check_serving(kind, n)

    def _raw(self, rng: random.Random, n: int, speak: bool) -> list[Any]:
        socks = []
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect(self.path)
                if speak:
                    junk = rng.randbytes(rng.randint(1, 64))
                    s.send(ZMTP_GREETING_START + junk if rng.random() < 0.5 else junk)
            except OSError:
                pass  # cut before we spoke, or the backlog was full: both fine
            socks.append(s)
        return socks

    def _dealers(self, n: int) -> list[Any]:
        socks = []
        for _ in range(n):
            d = self._ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.connect(self.server.endpoint)
            socks.append(d)
        return socks

    def _many_frames(self, rng: random.Random, n: int) -> None:
        max_bytes = self.server.max_bytes
        head = bytes(p.encode_request(p.StatusRequest(id="many"))[0])
        for _ in range(n):
            if rng.random() < 0.5:  # over the byte limit, no frame near it
                count = rng.randint(9, 40)
                frames = [b"x" * (max_bytes // 8)] * count
            else:  # over the frame limit, tiny frames
                frames = [b"y" * rng.randint(0, 16)] * rng.randint(p.MAX_TENSORS + 1, 400)
            d = self._ctx.socket(zmq.DEALER)
            d.setsockopt(zmq.LINGER, 0)
            d.connect(self.server.endpoint)
            try:
                d.send_multipart([b"", head, *frames], copy=False)
                if not d.poll(10_000):
                    self.report.findings.append(f"no reply to {len(frames)} frames of {len(frames[0])} bytes")
                    continue
                reply, _ = p.decode_reply(d.recv_multipart()[1:])
                if getattr(reply, "code", "") != "too_large":
                    self.report.findings.append(f"{len(frames)} frames of {len(frames[0])} bytes got {reply}")
                else:
                    self.report.too_large += 1
            finally:
                d.close(linger=0)

    def _check_bounds(self, kind: str, n: int) -> None:
        held = max(self.server.guard.by_process().values(), default=0)
        self.report.most_held = max(self.report.most_held, held)
        if held > self.server.limits.per_process:
            self.report.findings.append(f"{kind} x {n}: the guard held {held} connections from one process "
                                        f"(bound {self.server.limits.per_process})")

    def _check_serving(self, kind: str, n: int) -> None:
        from governor_client import Client, GovernorError

        deadline = time.monotonic() + 10
        while self.server.connections() >= self.server.limits.per_process and time.monotonic() < deadline:
            time.sleep(0.01)  # our own closed connections are let go first, or the fresh client would be cut
        try:
            with Client(self.server.endpoint, timeout_ms=10_000, retries=0) as client:
                client.status()
        except GovernorError as exc:
            self.report.findings.append(f"after {kind} x {n}: status failed: {exc}")
        if self.loop_error:
            self.report.findings.append(f"after {kind} x {n}: the daemon's loop raised:\n{self.loop_error}")
            self.loop_error = ""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._ctx.destroy(linger=0)


def run_floods(harness: FloodHarness, rng: random.Random, rounds: int, max_seconds: float,
               max_connections: int = 200) -> FloodReport:
    """``rounds`` rounds (fewer if ``max_seconds`` runs out) of at most ``max_connections`` each."""
    start = time.monotonic()
    for _ in range(rounds):
        if time.monotonic() - start > max_seconds:
            break
        harness.round(rng, max_connections)
    harness.report.seconds = time.monotonic() - start
    return harness.report


def run_floods_on_ipc(model: Path, work: Path, rng: random.Random, rounds: int, max_seconds: float,
                      max_connections: int = 200) -> FloodReport:
    """The in-process fuzz daemon behind a real ipc socket in ``work``, flooded for ``rounds`` rounds."""
    from benchmarks.fuzz_daemon import FUZZ_MAX_BYTES, open_fuzz_daemon
    from governor.transport.zmq_server import ZmqServerEnd

    server = ZmqServerEnd(f"ipc://{work}/flood.sock", max_bytes=FUZZ_MAX_BYTES)
    harness, close = open_fuzz_daemon(model, work / "flood-root", server=server)
    floods = FloodHarness(harness.daemon, server)
    try:
        return run_floods(floods, rng, rounds, max_seconds, max_connections)
    finally:
        floods.close()
        server.close()
        close()
