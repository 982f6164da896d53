"""`governor keys` pairs really gate a tcp:// ZmqServerEnd: the authorised client talks, another is refused."""

from __future__ import annotations

import logging
import stat
import threading

import pytest
import zmq
from governor_client import Client, CurveKeys, DaemonUnreachable

from governor.cli.main import main
from governor.core import protocol as p
from governor.transport.zmq_server import ServerSecurity, TransportError, ZmqServerEnd


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def answer_status(server, stop):
    while not stop.is_set():
        got = server.recv(50)
        if got is None:
            continue
        identity, frames = got
        msg, _ = p.decode_request(frames)
        if isinstance(msg, p.HelloRequest):
            reply = p.HelloReply(id=msg.id, server="test", board="host", simulated=True, telemetry_endpoint=None,
                                 max_bytes=p.MAX_MESSAGE_BYTES)
        else:
            reply = p.StatusReply(id=msg.id, server="test", board="host", simulated=True, uptime_s=1.0, served=7)
        server.send(identity, p.encode_reply(reply))


@pytest.fixture
def keys(tmp_path, capsys):
    kdir, elsewhere = tmp_path / "keys", tmp_path / "elsewhere"
    assert main(["keys", "--dir", str(kdir)]) == 0
    assert main(["keys", "--dir", str(kdir), "--client", "--name", "alice"]) == 0
    assert main(["keys", "--dir", str(elsewhere), "--client", "--name", "mallory"]) == 0
    return kdir, elsewhere, capsys.readouterr().out


def test_files_modes_and_wiring_instructions(keys):
    kdir, _, out = keys
    assert mode(kdir / "server.key_secret") == 0o600 and mode(kdir / "server.key") == 0o644
    assert mode(kdir / "clients/alice.key_secret") == 0o600
    assert (kdir / "authorized/alice.key").read_text() == (kdir / "clients/alice.key").read_text()
    assert f'curve_server_secret = "{kdir}/server.key_secret"' in out
    assert f'curve_authorized_dir = "{kdir}/authorized"' in out
    assert "--curve-server-key server.key --curve-client-key alice.key_secret" in out


def test_existing_pair_is_never_replaced_without_force(keys, capsys):
    kdir, _, _ = keys
    before = (kdir / "server.key_secret").read_text()
    assert main(["keys", "--dir", str(kdir)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (kdir / "server.key_secret").read_text() == before
    assert main(["keys", "--dir", str(kdir), "--force"]) == 0
    assert (kdir / "server.key_secret").read_text() != before
    assert main(["keys", "--dir", str(kdir), "--name", "../evil"]) == 2


def test_curve_lets_the_authorised_client_in_and_refuses_another(keys, caplog):
    kdir, elsewhere, _ = keys
    caplog.set_level(logging.DEBUG, logger="governor.auth")
    ctx = zmq.Context()  # own context: its ZAP handler must not leak into other tests
    security = ServerSecurity(curve_secret_file=str(kdir / "server.key_secret"),
                              curve_authorized_dir=str(kdir / "authorized"))
    server = ZmqServerEnd("tcp://127.0.0.1:*", security=security, context=ctx)
    endpoint = server.bound_endpoint
    stop = threading.Event()
    worker = threading.Thread(target=answer_status, args=(server, stop), daemon=True)
    worker.start()
    try:
        alice = CurveKeys.from_files(str(kdir / "server.key"), str(kdir / "clients/alice.key_secret"))
        with Client(endpoint, curve=alice, timeout_ms=3000, retries=0) as client:
            assert client.status().served == 7
        mallory = CurveKeys.from_files(str(kdir / "server.key"), str(elsewhere / "clients/mallory.key_secret"))
        with pytest.raises(DaemonUnreachable), Client(endpoint, curve=mallory, timeout_ms=500, retries=0) as client:
            client.status()
    finally:
        stop.set()
        worker.join(2)
        server.close()
        ctx.destroy(linger=0)
    verdicts = [r.getMessage() for r in caplog.records if r.name == "governor.auth"]
    mallory_key = (elsewhere / "clients/mallory.key").read_text().split('public-key = "')[1][:40]
    assert any(v.startswith("DENIED (CURVE)") and mallory_key in v for v in verdicts)
    assert any(v.startswith("ALLOWED (CURVE)") for v in verdicts)


def _serve_once(security, ctx):
    return ZmqServerEnd("tcp://127.0.0.1:*", security=security, context=ctx)


def test_tcp_without_authorised_keys_fails_closed_with_what_to_set(keys, tmp_path):
    kdir, _, _ = keys
    secret = str(kdir / "server.key_secret")
    ctx = zmq.Context()
    try:
        with pytest.raises(TransportError, match=r"curve_authorized_dir.*curve_allow_any = true"):
            _serve_once(ServerSecurity(curve_secret_file=secret), ctx)
        with pytest.raises(TransportError, match="not a directory"):
            _serve_once(ServerSecurity(curve_secret_file=secret, curve_authorized_dir=str(tmp_path / "nope")), ctx)
        with pytest.raises(TransportError, match="both"):
            _serve_once(ServerSecurity(curve_secret_file=secret, curve_authorized_dir=str(kdir / "authorized"),
                                       curve_allow_any=True), ctx)
    finally:
        ctx.destroy(linger=0)


def test_an_empty_key_directory_is_served_but_said(keys, tmp_path, caplog):
    kdir, _, _ = keys
    empty = tmp_path / "empty"
    empty.mkdir()
    ctx = zmq.Context()
    try:
        server = _serve_once(ServerSecurity(curve_secret_file=str(kdir / "server.key_secret"),
                                            curve_authorized_dir=str(empty)), ctx)
        server.close()
    finally:
        ctx.destroy(linger=0)
    assert any("holds no client public key" in r.getMessage() for r in caplog.records)


def test_allow_any_is_an_explicit_choice_that_lets_an_unlisted_client_in(keys, caplog):
    kdir, elsewhere, _ = keys
    ctx = zmq.Context()
    server = _serve_once(ServerSecurity(curve_secret_file=str(kdir / "server.key_secret"), curve_allow_any=True), ctx)
    stop = threading.Event()
    worker = threading.Thread(target=answer_status, args=(server, stop), daemon=True)
    worker.start()
    try:
        mallory = CurveKeys.from_files(str(kdir / "server.key"), str(elsewhere / "clients/mallory.key_secret"))
        with Client(server.bound_endpoint, curve=mallory, timeout_ms=3000, retries=0) as client:
            assert client.status().served == 7
    finally:
        stop.set()
        worker.join(2)
        server.close()
        ctx.destroy(linger=0)
    assert any("curve_allow_any = true" in r.getMessage() for r in caplog.records)
