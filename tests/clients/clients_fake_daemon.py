"""A small fake daemon for the client tests: a ROUTER on an ipc socket in a temporary directory.

It answers with canned but valid replies built by the protocol's own encoders, records every
request it decodes (with the peer identity), and can be told to stay silent, send a stale reply
first, speak another protocol version, or restart. Sockets use linger 0 and short polls, so no
test can hang on it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

import numpy as np
import zmq

from governor.core import protocol as p

POINT = p.Point(mapping=p.Placement(unit="a57", threads=4), setpoints_hz={"cpu-a57": 2_035_200_000}, k=3)
PREDICTED_MS, MEASURED_MS = 12.5, 13.1


@dataclass
class Received:
    identity: bytes
    msg: p.Request
    tensors: dict[str, np.ndarray]


def canned_reply(msg: p.Request, tensors: dict[str, np.ndarray], telemetry: str | None):
    """What the fake daemon answers: outputs are the inputs doubled, so the round trip is checkable."""
    if isinstance(msg, p.HelloRequest):
        return p.HelloReply(
            id=msg.id,
            server="fake",
            board="jetson-tx2",
            simulated=True,
            telemetry_endpoint=telemetry,
            max_bytes=1 << 20,
        ), {}
    if isinstance(msg, (p.InferRequest, p.AdviseRequest)):
        deadline = msg.budget.deadline_ms
        infeasible = deadline is not None and deadline < PREDICTED_MS
        if infeasible and msg.strict:
            return p.ErrorReply(id=msg.id, code="infeasible", message="relax deadline_ms to >= 12.5"), {}
        predicted = p.Estimate(latency_ms=PREDICTED_MS, energy_mj=40.0)
        if isinstance(msg, p.AdviseRequest):
            return p.AdviseReply(
                id=msg.id, point=POINT, predicted=predicted, budget_infeasible=infeasible, simulated=True
            ), {}
        met = deadline is None or deadline >= MEASURED_MS
        reply = p.InferReply(
            id=msg.id,
            point=POINT,
            predicted=predicted,
            measured=p.Estimate(latency_ms=MEASURED_MS, energy_mj=41.0),
            budget_met=met,
            budget_infeasible=infeasible,
            simulated=True,
        )
        return reply, {f"doubled_{name}": array * 2 for name, array in tensors.items()}
    if isinstance(msg, p.AcquireRequest):
        return p.LeaseReply(id=msg.id, lease_id=f"L-{msg.id}", point=POINT,
                            predicted=p.Estimate(latency_ms=PREDICTED_MS, energy_mj=40.0),
                            expires_in_ms=msg.ttl_ms or 1000.0, budget_infeasible=False, simulated=True), {}
    if isinstance(msg, p.ReleaseRequest):
        measured = p.Estimate(latency_ms=msg.latency_ms, energy_mj=msg.energy_mj)
        return p.ReleasedReply(id=msg.id, lease_id=msg.lease_id, measured=measured, budget_met=msg.outcome == "ok",
                               total_ms=msg.latency_ms + 1.0, simulated=True), {}
    if isinstance(msg, p.StatusRequest):
        return p.StatusReply(id=msg.id, server="fake", board="jetson-tx2", simulated=True, uptime_s=1.0), {}
    if isinstance(msg, p.ProfilesRequest):
        return p.ProfilesReply(id=msg.id), {}
    return p.ReloadReply(id=msg.id, loaded=("resnet-gp",)), {}


@dataclass
class FakeDaemon:
    path: str
    telemetry: str | None = None
    received: list[Received] = field(default_factory=list)
    silent: int = 0  # ignore this many requests (a hung or overloaded daemon)
    stale_first: bool = False  # send a reply with a foreign id before the real one
    version: str | None = None  # write this protocol version into reply headers
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.path}"

    def start(self) -> FakeDaemon:
        self._stop.clear()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        assert ready.wait(5), "fake daemon did not bind"
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            assert not self._thread.is_alive(), "fake daemon did not stop"

    def requests(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.msg.type == kind]

    def _serve(self, ready: threading.Event) -> None:
        with zmq.Context() as ctx, ctx.socket(zmq.ROUTER) as sock:
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(self.endpoint)
            ready.set()
            while not self._stop.is_set():
                if sock.poll(20):
                    self._answer(sock, sock.recv_multipart())

    def _answer(self, sock: zmq.Socket, parts: list[bytes]) -> None:
        identity, delimiter, frames = parts[0], parts[1], parts[2:]
        assert delimiter == b"", "clients must send an empty delimiter frame before the header"
        msg, tensors = p.decode_request(frames)
        self.received.append(Received(identity, msg, {k: v.copy() for k, v in tensors.items()}))
        if self.silent > 0:
            self.silent -= 1
            return
        if self.stale_first:
            stale = p.StatusReply(id="stale-1", server="old", board="jetson-tx2", simulated=True, uptime_s=0)
            sock.send_multipart([identity, b"", *p.encode_reply(stale)])
        reply, outputs = canned_reply(msg, tensors, self.telemetry)
        out = p.encode_reply(reply, outputs)
        if self.version is not None:
            out[0] = json.dumps({**json.loads(out[0]), "v": self.version}).encode()
        sock.send_multipart([identity, b"", *out], copy=False)
