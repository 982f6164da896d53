"""The daemon as a subprocess on ipc: a short bounded soak, and abuse at the socket level.

The daemon serves a fake host without DVFS (it measures its small host table at start) with a
64 KiB message limit from its config file, so the limit checks are cheap to reach over the wire.
``benchmarks/soak.py`` runs the long soak (100,000 requests) with the same code.
"""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import zmq
from governor_client import Client
from reliability_helpers import short_dir

from benchmarks.fuzz_cases import CATEGORIES, Target
from benchmarks.fuzz_daemon import judge
from benchmarks.soak import host_tree, run_soak, start_daemon
from governor.core import protocol as p

LIMIT = 65536
HARD_LIMIT = LIMIT * 2 + 65536  # the transport's ZMQ_MAXMSGSIZE: libzmq drops a peer above it, unanswered


@pytest.fixture(scope="module")
def host_daemon(quick_model):
    work = short_dir("gr-s-")
    host_tree(work / "root")
    daemon = start_daemon(work, work / "root", quick_model, work / "state", board="host",
                          config_text=f"[daemon]\nmax_message_bytes = {LIMIT}\n")
    daemon.wait_serving()
    yield daemon
    assert daemon.terminate() == 0, daemon.output()
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def raw(host_daemon):
    """A bare DEALER on the daemon's socket, for frames no client library would send."""
    ctx = zmq.Context.instance()
    sockets = []

    def connect():
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(host_daemon.endpoint)
        sockets.append(sock)
        return sock

    yield connect
    for sock in sockets:
        sock.close(0)


def replies(sock, timeout_ms: int, want: int = 1) -> list[list[bytes]]:
    """Up to ``want`` replies within ``timeout_ms``, plus any extra already there."""
    got: list[list[bytes]] = []
    while sock.poll(timeout_ms if len(got) < want else 0):
        frames = sock.recv_multipart()
        got.append(frames[1:] if frames and frames[0] == b"" else frames)
    return got


def status_frames(rid: str) -> list[bytes]:
    return [b"", *(bytes(f) for f in p.encode_request(p.StatusRequest(id=rid)))]


def test_reliability_short_soak_answers_everything_without_growing(host_daemon, figures):
    report = run_soak(host_daemon.endpoint, host_daemon.proc.pid, clients=3, requests=500, windows=5,
                      max_seconds=120)
    assert report.answered == report.asked and not report.errors, report.lines()
    assert report.rss_growth < 0.05, report.lines()
    assert max(w[2] for w in report.windows[1:]) < 1000, report.lines()  # no window stalls
    figures.append(f"soak (short): {report.answered}/{report.asked} answered, RSS growth "
                   f"{report.rss_growth * 100:+.2f} %, p99 per window {[round(w[2], 1) for w in report.windows]} ms")


def test_reliability_socket_level_abuse_leaves_the_daemon_serving(raw, host_daemon, figures):
    sock = raw()
    sock.send_multipart([bytes(f) for f in p.encode_request(p.StatusRequest(id="no-delimiter"))])
    assert not sock.poll(500)  # no envelope delimiter: not a conforming client, dropped (protocol §2)
    big = np.zeros((LIMIT // 256 + 10, 1, 8, 8), np.float32)  # over the limit, under libzmq's hard guard
    sock.send_multipart([b"", *(bytes(f) for f in p.encode_request(p.InferRequest(id="big"), {"x": big}))])
    sock.send_multipart(status_frames("after"))
    got = [p.decode_reply(r)[0] for r in replies(sock, 10_000, want=2)]
    # The size is checked before the header is parsed, so that error cannot name the request (id "").
    assert [(m.type, getattr(m, "code", "")) for m in got] == [("error", "too_large"), ("status", "")]
    assert got[0].id in ("", "big") and got[1].id == "after"
    huge = raw()
    huge.send_multipart([b"", b"x" * (HARD_LIMIT + 1)])
    assert not huge.poll(500)  # libzmq dropped that peer
    with Client(host_daemon.endpoint, timeout_ms=20000, retries=0) as client:
        assert client.status().board == "host"
    figures.append("socket abuse: no delimiter dropped, over-limit infer -> too_large, over libzmq guard -> "
                   "peer dropped; the daemon kept serving")


def test_reliability_fuzz_over_the_real_socket(raw, host_daemon, figures):
    sock = raw()
    target = Target((1, 8, 8), "quick", LIMIT, max_batch=0)
    rng = random.Random(3)
    names = [n for n in sorted(CATEGORIES) if n != "big_batch"]  # its batches exceed the hard guard here
    tried = 0
    for i in range(300):
        case = CATEGORIES[names[i % len(names)]](rng, target)
        if sum(len(f) for f in case.frames) > HARD_LIMIT:
            continue
        sock.send_multipart([b"", *case.frames])
        judge(case, replies(sock, 10_000))
        tried += 1
    assert tried > 250 and not sock.poll(300)  # and no reply came twice
    with Client(host_daemon.endpoint, timeout_ms=20000, retries=0) as client:
        assert client.status().served > 0
    figures.append(f"fuzz over ipc (subprocess daemon): {tried} inputs, each answered once with a typed reply")
