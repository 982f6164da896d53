"""Issue 20 at the transport: connection bounds, a message bounded whole, a memory ceiling, refusals said.

The server end runs in this process on an ipc socket in tmp_path; raw sockets stand in for clients
that never speak ZMTP. Counts and times are small: tens of connections, seconds at most.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from governor.core import protocol as p
from governor.transport.refusals import RefusalLog
from governor.transport.resources import RssProbe
from governor.transport.zmq_server import ConnectionLimits, ServerSecurity, ZmqServerEnd

NO_CEILING = 0
ONE_REQUEST = ("import sys, zmq; s = zmq.Context().socket(zmq.DEALER); s.connect(sys.argv[1]);"
               "s.send_multipart([b'', b'{}']); print(s.poll(5000))")
# 150 x 2 MiB: libzmq would hold all 300 MiB before the first frame is seen; prints 1 once disconnected.
BIG_SENDER = ("import sys, zmq; d = zmq.Context().socket(zmq.DEALER); d.connect(sys.argv[1]);"
              "m = d.get_monitor_socket(zmq.EVENT_DISCONNECTED);"
              "d.send_multipart([b'', b'{}'] + [b'x' * 2**21] * 150); print(m.poll(10000))")


def wait_until(check, timeout_s: float = 5.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def server_on(tmp_path, **limits) -> ZmqServerEnd:
    return ZmqServerEnd(f"ipc://{tmp_path}/g.sock", security=ServerSecurity(socket_group="nosuchgroup"),
                        max_bytes=8 * 2**20, limits=ConnectionLimits(**{"memory_ceiling": NO_CEILING, **limits}))


def raw_connections(path, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(path))
        socks.append(s)
    return socks


def was_cut(sock: socket.socket, timeout_s: float = 0.3) -> bool:
    """True once the server ended the connection (EOF after its ZMTP greeting, if any)."""
    sock.settimeout(timeout_s)
    try:
        while True:
            if sock.recv(4096) == b"":
                return True
    except TimeoutError:
        return False
    except OSError:
        return True


def request(sock, frames: list[bytes]) -> p.Message:
    sock.send_multipart([b"", *frames])
    assert sock.poll(5000), "no reply"
    return p.decode_reply(sock.recv_multipart()[1:])[0]


def answer_one(server: ZmqServerEnd, timeout_s: float = 5.0) -> list[memoryview]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = server.recv(50)
        if got is not None:
            server.send(got[0], p.encode_reply(p.StatusReply(id="s", server="t", board="host", simulated=True,
                                                             uptime_s=1.0, served=0)))
            return got[1]
    raise AssertionError("no request came")


def test_connections_over_the_bound_of_one_process_are_cut_and_others_still_get_in(tmp_path):
    server = server_on(tmp_path, per_process=4)
    flood = raw_connections(tmp_path / "g.sock", 20)
    try:
        wait_until(lambda: server.guard.cuts >= 16, what="16 connections cut")
        assert server.connections() == 4 and server.guard.cuts == 16
        assert sum(was_cut(s) for s in flood) == 16  # before: all 20 held until the 30 s handshake timeout
        # Another process is another peer: its client gets in while this one's flood is still held.
        other = subprocess.Popen([sys.executable, "-c", ONE_REQUEST, server.endpoint], stdout=subprocess.PIPE,
                                 text=True)
        answer_one(server, timeout_s=30)
        assert other.communicate(timeout=30)[0].strip() == "1"
    finally:
        for s in flood:
            s.close()
        server.close()


def test_the_total_bound_holds_whoever_connects(tmp_path):
    server = server_on(tmp_path, total=3)
    flood = raw_connections(tmp_path / "g.sock", 10)
    try:
        wait_until(lambda: server.guard.cuts >= 7, what="7 connections cut")
        assert server.connections() == 3
        for s in flood:
            s.close()
        wait_until(lambda: server.connections() == 0, what="the held connections to be let go")
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.connect(f"ipc://{tmp_path}/g.sock")  # room again once they are gone
        dealer.send_multipart([b"", b"{}"])
        answer_one(server)
        assert dealer.poll(2000)
        dealer.close(0)
    finally:
        server.close()


def test_a_message_is_bounded_whole_not_frame_by_frame(tmp_path):
    server = server_on(tmp_path)
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"ipc://{tmp_path}/g.sock")
    head = bytes(p.encode_request(p.StatusRequest(id="x"))[0])
    try:
        for frames, size, says in [(40, 2 * 2**20, "exceeds the receiver's limit"), (200, 1, "201 frames exceed")]:
            dealer.send_multipart([b"", head, *[b"x" * size] * frames])
            got = wait_until(lambda: server.recv(50) or dealer.poll(0), what="the too_large reply")
            assert got == 1, got  # never handed to the daemon (recv gave None): the transport answered
            reply = p.decode_reply(dealer.recv_multipart()[1:])[0]
            assert (reply.type, reply.code, reply.id) == ("error", "too_large", "") and says in reply.message
        dealer.send_multipart([b"", head, b"y" * 2**20])  # within the limit: handed over whole
        assert [v.nbytes for v in answer_one(server)] == [len(head), 2**20]
    finally:
        dealer.close(0)
        server.close()


def test_a_sender_is_cut_while_memory_is_over_the_ceiling(tmp_path):
    # In a fresh interpreter: RSS is the whole process's, and after a thousand tests in one process
    # the heap they left (fragmented arenas, pages of other tests' threads) kept RSS over the bound for
    # 20 s in one full run in three, though the guard had freed every frame.
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); "
                           "import test_transport_guard as t; t.memory_scenario(sys.argv[1])",
                           str(tmp_path), str(Path(__file__).parent)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]


def memory_scenario(tmp_path: str) -> None:
    """The memory-ceiling scenario; run by the test above in an interpreter of its own."""
    rss = RssProbe()
    start = rss.rss_bytes()
    server = server_on(tmp_path, memory_ceiling=start + 32 * 2**20)
    sender = subprocess.Popen([sys.executable, "-c", BIG_SENDER, server.endpoint], stdout=subprocess.PIPE, text=True)
    try:
        peak = start
        deadline = time.monotonic() + 15
        while sender.poll() is None and time.monotonic() < deadline:
            peak = max(peak, rss.rss_bytes())
            assert server.recv(5) is None
        assert sender.wait(10) == 0 and sender.stdout.read().strip() == "1"  # it was disconnected
        assert server.guard.cuts == 1
        # Cut well before the whole 300 MiB (memory is sampled every 25 ms; ipc moves ~2 GB/s here).
        assert peak - start < 240 * 2**20, (peak - start) >> 20
        # libzmq's I/O thread frees the cut pipe's frames; with the suite on both cores that took over 5 s once,
        # and in a CI run the freed frames stayed in glibc's arenas past 20 s: what is freed is what the guard
        # controls, so the arenas are trimmed before each look (malloc_trim; RSS is then what is still held).
        libc = ctypes.CDLL(None)

        def held() -> int:
            libc.malloc_trim(0)
            return rss.rss_bytes() - start

        wait_until(lambda: held() < 24 * 2**20, timeout_s=20.0, what="the memory handed back")
    finally:
        sender.kill()
        server.close()
        rss.close()


def test_refusals_are_warnings_a_few_per_minute_per_kind(caplog):
    now = [0.0]
    refusals = RefusalLog(logging.getLogger("governor.auth"), burst=3, window_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="governor.auth"):
        logged = [refusals.warn("connections", "refused %d", i) for i in range(10)]
        assert refusals.warn("key", "refused a key")  # a flood of one kind does not hide another
        now[0] = 61.0
        assert refusals.warn("connections", "refused %d", 10)
    assert logged == [True] * 3 + [False] * 7 and refusals.total == 12
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["refused 0", "refused 1", "refused 2", "refused a key",
                     "refused 10 (7 more like it not logged before this one)"]


@pytest.fixture
def curve_keys(tmp_path):
    authorised, others = tmp_path / "authorised", tmp_path / "others"
    for d in (authorised, others):
        d.mkdir()
    zmq.auth.create_certificates(str(tmp_path), "server")
    zmq.auth.create_certificates(str(others), "mallory")
    return tmp_path, authorised, others


def test_a_curve_refusal_is_a_warning_that_names_the_key(curve_keys, caplog):
    keys, authorised, others = curve_keys
    ctx = zmq.Context()
    server = ZmqServerEnd("tcp://127.0.0.1:*", context=ctx, security=ServerSecurity(
        curve_secret_file=str(keys / "server.key_secret"), curve_authorized_dir=str(authorised)))
    client = ctx.socket(zmq.DEALER)
    try:
        client.curve_serverkey = zmq.auth.load_certificate(str(keys / "server.key"))[0]
        client.curve_publickey, client.curve_secretkey = zmq.auth.load_certificate(str(others / "mallory.key_secret"))
        with caplog.at_level(logging.WARNING, logger="governor.auth"):
            client.connect(server.bound_endpoint)
            client.send_multipart([b"", b"{}"])
            wait_until(lambda: [r for r in caplog.records if "refused a CURVE client" in r.getMessage()],
                       what="the refusal at WARNING")
    finally:
        client.close(0)
        server.close()
        ctx.destroy(linger=0)
    line = next(r.getMessage() for r in caplog.records if "refused a CURVE client" in r.getMessage())
    mallory = (others / "mallory.key").read_text().split('public-key = "')[1][:40]
    assert "from 127.0.0.1" in line and mallory in line and "Unknown key" in line
