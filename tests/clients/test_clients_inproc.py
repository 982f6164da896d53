"""The client over governor.transport.inproc: no sockets, same protocol, same retry behaviour."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from clients_fake_daemon import canned_reply
from governor_client import Client, DaemonUnreachable

from governor.core import protocol as p
from governor.transport.inproc import HandlerTransport, InprocPair


def answer(frames):
    msg, tensors = p.decode_request(frames)
    return p.encode_reply(*canned_reply(msg, tensors, None))


def test_clients_inproc_handler_transport_round_trip():
    transport = HandlerTransport(answer)
    client = Client("inproc://test", transport=transport, timeout_ms=50)
    result = client.infer({"x": np.arange(3, dtype=np.int16)})
    np.testing.assert_array_equal(result.outputs["doubled_x"], [0, 2, 4])
    assert [p.decode_request(f)[0].type for f in transport.sent] == ["hello", "infer"]


def test_clients_inproc_frames_are_copied_like_a_wire():
    transport = HandlerTransport(answer)
    client = Client("inproc://test", transport=transport, timeout_ms=50)
    data = np.zeros(4, dtype=np.float32)
    client.infer(data)
    data[:] = 5  # the sender's later writes must not reach what was sent
    _, sent = p.decode_request(transport.sent[-1])
    assert not sent["input"].any()


def test_clients_inproc_silence_resets_and_gives_up_after_the_retries():
    calls = []

    def mute_after_hello(frames):
        calls.append(frames)
        return answer(frames) if len(calls) == 1 else None

    transport = HandlerTransport(mute_after_hello)
    client = Client("inproc://test", transport=transport, timeout_ms=20, retries=3)
    with pytest.raises(DaemonUnreachable):
        client.status()
    assert transport.resets == 3 and len(calls) == 1 + 4


def test_clients_inproc_pair_serves_from_a_thread_and_drops_replies_to_reset_ends():
    pair = InprocPair()
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            incoming = pair.server.recv(20)
            if incoming is not None:
                pair.server.send(incoming[0], answer(incoming[1]))

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        end = pair.connect()
        with Client("inproc://pair", transport=end, timeout_ms=500) as client:
            assert client.status().board == "jetson-tx2"
        old_identity = end.identity
        end.reset()
        pair.server.send(old_identity, [b"late reply"])
        assert end.recv(30) is None, "a reply to the old identity must not reach the new one"
    finally:
        stop.set()
        server.join(2)
