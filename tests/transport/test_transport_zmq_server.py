"""The ZeroMQ server end against the real client library over ipc sockets in tmp_path."""

import os
import stat
import threading
import time

import pytest
import zmq
from governor_client import Client

from governor.core import protocol as p
from governor.transport.zmq_server import ServerSecurity, TransportError, ZmqServerEnd


def serve_once(server, handler, stop):
    while not stop.is_set():
        got = server.recv(50)
        if got is None:
            continue
        identity, frames = got
        try:
            msg, tensors = p.decode_request(frames)
            reply, out = handler(msg, tensors)
        except p.ProtocolError as exc:
            reply, out = exc.to_reply(), None
        server.send(identity, p.encode_reply(reply, out))


def hello_and_echo(msg, tensors):
    if isinstance(msg, p.HelloRequest):
        return p.HelloReply(id=msg.id, server="test", board="host", simulated=False,
                            telemetry_endpoint=None, max_bytes=p.MAX_MESSAGE_BYTES), None
    if isinstance(msg, p.StatusRequest):
        return p.StatusReply(id=msg.id, server="test", board="host", simulated=False, uptime_s=1.0,
                             served=len(tensors)), None
    raise p.ProtocolError("bad_request", "only hello and status here", request_id=msg.id)


@pytest.fixture
def running(tmp_path):
    ep = f"ipc://{tmp_path}/gov.sock"
    server = ZmqServerEnd(ep, f"ipc://{tmp_path}/tele.sock", security=ServerSecurity(socket_group="nosuchgroup"))
    stop = threading.Event()
    th = threading.Thread(target=serve_once, args=(server, hello_and_echo, stop), daemon=True)
    th.start()
    yield ep, server, tmp_path
    stop.set()
    th.join(2)
    server.close()


def test_client_round_trip_and_socket_mode(running):
    ep, _server, tmp_path = running
    mode = stat.S_IMODE(os.stat(tmp_path / "gov.sock").st_mode)
    assert mode == 0o660
    with Client(ep, timeout_ms=2000, retries=0) as c:
        st = c.status()
        assert st.board == "host" and st.served == 0


def test_error_reply_for_a_request_the_handler_refuses(running):
    ep, *_ = running
    with Client(ep, timeout_ms=2000, retries=0) as c:
        with pytest.raises(Exception) as err:
            c.advise(deadline_ms=10)
        assert "only hello and status" in str(err.value)


def test_message_without_delimiter_is_dropped(running):
    ep, _server, _ = running
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(ep)
    raw.send_multipart([b'{"v":"1.0","type":"status","id":"x"}'])
    assert raw.poll(300) == 0  # no reply, server still alive
    raw.close()
    with Client(ep, timeout_ms=2000, retries=0) as c:
        assert c.status().board == "host"


def test_close_unlinks_sockets_and_live_socket_is_not_stolen(tmp_path):
    ep = f"ipc://{tmp_path}/a.sock"
    first = ZmqServerEnd(ep)
    with pytest.raises(TransportError, match="in use"):
        ZmqServerEnd(ep)
    first.close()
    assert not (tmp_path / "a.sock").exists()
    (tmp_path / "a.sock").write_text("stale")  # left by a crash: replaced
    second = ZmqServerEnd(ep)
    second.close()


def test_tcp_without_curve_is_refused():
    with pytest.raises(TransportError, match="curve_server_secret"):
        ZmqServerEnd("tcp://127.0.0.1:0")


def test_publish_reaches_a_subscriber(tmp_path):
    server = ZmqServerEnd(f"ipc://{tmp_path}/r.sock", f"ipc://{tmp_path}/t.sock")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/t.sock")
    ev = p.TelemetryEvent(seq=0, t=1.0, simulated=True, kind="setpoints", message="x")
    got = None
    for _ in range(50):  # PUB drops until the subscription has propagated
        server.publish(p.encode_telemetry(ev))
        if sub.poll(20):
            got = p.decode_telemetry(sub.recv_multipart())
            break
    sub.close()
    server.close()
    assert got is not None and got.kind == "setpoints" and got.simulated


def _until(condition, seconds=5.0):
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_wants_follows_subscriptions_by_topic_prefix_and_disconnects(tmp_path):
    server = ZmqServerEnd(f"ipc://{tmp_path}/r.sock", f"ipc://{tmp_path}/t.sock")
    ctx = zmq.Context.instance()
    try:
        assert not server.wants("inference")  # nobody subscribes: the daemon builds nothing
        infer_only = ctx.socket(zmq.SUB)
        infer_only.setsockopt(zmq.LINGER, 0)
        infer_only.setsockopt(zmq.SUBSCRIBE, b"infer")  # a prefix of "inference"
        infer_only.connect(f"ipc://{tmp_path}/t.sock")
        assert _until(lambda: server.wants("inference"))
        assert not server.wants("observation")
        everything = ctx.socket(zmq.SUB)
        everything.setsockopt(zmq.LINGER, 0)
        everything.setsockopt(zmq.SUBSCRIBE, b"")
        everything.connect(f"ipc://{tmp_path}/t.sock")
        assert _until(lambda: server.wants("observation"))
        everything.close()  # a subscriber that goes away takes its subscriptions with it
        assert _until(lambda: not server.wants("observation"))
        assert server.wants("inference")
        infer_only.setsockopt(zmq.UNSUBSCRIBE, b"infer")
        assert _until(lambda: not server.wants("inference"))
        infer_only.close()
    finally:
        server.close()
    bare = ZmqServerEnd(f"ipc://{tmp_path}/n.sock")
    assert not bare.wants("inference")  # no telemetry endpoint at all
    bare.close()



def test_busy_polling_only_follows_recent_traffic_and_keeps_the_timeout(tmp_path, monkeypatch):
    import time

    from governor.transport import zmq_server

    monkeypatch.setattr(zmq_server, "_BUSY_WINDOW_S", 0.5)  # wide enough for a loaded CI machine
    server = ZmqServerEnd(f"ipc://{tmp_path}/b.sock", busy_poll_us=20_000)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(f"ipc://{tmp_path}/b.sock")
    try:
        spins = []
        original = server._router.get  # the spin reads the EVENTS flag; a blocking wait uses the Poller
        server._router.get = lambda *a, **k: spins.append(1) or original(*a, **k)
        assert server.recv(30) is None and not spins  # idle: a plain blocking poll, no spinning
        raw.send_multipart([b"", b"first"])
        assert server.recv(2000)[1][0].tobytes() == b"first"
        threading.Timer(0.005, raw.send_multipart, ([b"", b"second"],)).start()
        got = server.recv(2000)  # right after traffic: spins, and still catches a message arriving mid-spin
        assert got is not None and got[1][0].tobytes() == b"second" and spins
        time.sleep(0.6)
        start = time.monotonic()
        assert server.recv(40) is None  # no message: the timeout still holds after the spin window
        assert time.monotonic() - start >= 0.035
    finally:
        raw.close()
        server.close()


def test_is_empty_tells_a_waiting_request_without_taking_it(tmp_path):
    server = ZmqServerEnd(f"ipc://{tmp_path}/e.sock", security=ServerSecurity(socket_group="nosuchgroup"))
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.connect(f"ipc://{tmp_path}/e.sock")
    try:
        assert server.is_empty()
        dealer.send_multipart([b"", b"{}"])
        deadline = time.monotonic() + 2.0
        while server.is_empty() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not server.is_empty() and not server.is_empty()  # asking takes nothing off the socket
        assert server.recv(100) is not None
        assert server.is_empty()
    finally:
        dealer.close(linger=0)
        server.close()


def test_the_inproc_server_tells_the_same():
    from governor.transport.inproc import InprocPair

    pair = InprocPair()
    client = pair.connect()
    assert pair.server.is_empty()
    client.send([b"{}"])
    assert not pair.server.is_empty()
    assert pair.server.recv(0) is not None and pair.server.is_empty()
