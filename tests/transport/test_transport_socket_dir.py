"""Issue 20.7: a socket directory someone else could write is refused, by the daemon and by the client.

Another user who made /tmp/governor-<uid> (mode 777) could rename the daemon's socket away and bind a
fake daemon that the victim's default client then talked to. Ownership by another user is faked by
wrapping os.lstat, since tests cannot chown.
"""

from __future__ import annotations

import os

import pytest
from governor_client import Client, DaemonUnreachable, default_endpoint
from governor_client._transport import check_socket_dir as client_check

from governor.transport.zmq_server import ServerSecurity, TransportError, ZmqServerEnd

SECURITY = ServerSecurity(socket_group="nosuchgroup")


def owned_by(monkeypatch, directory, uid: int) -> None:
    """Make os.lstat say ``directory`` belongs to ``uid``."""
    real = os.lstat

    def fake(path, *args, **kwargs):
        st = real(path, *args, **kwargs)
        if os.path.abspath(path) != os.path.abspath(directory):
            return st
        fields = list(st)
        fields[4] = uid  # st_uid
        return os.stat_result(fields)

    monkeypatch.setattr(os, "lstat", fake)


@pytest.fixture
def shared(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)
    return d


def test_the_daemon_refuses_a_directory_others_may_write(shared):
    with pytest.raises(TransportError, match=r"writable by others \(mode 777\).*chmod go-w"):
        ZmqServerEnd(f"ipc://{shared}/g.sock", security=SECURITY)
    assert not (shared / "g.sock").exists()


def test_the_daemon_refuses_a_directory_of_another_user(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    owned_by(monkeypatch, theirs, os.geteuid() + 4242)
    with pytest.raises(TransportError, match=f"belongs to uid {os.geteuid() + 4242}, not to this daemon's user"):
        ZmqServerEnd(f"ipc://{theirs}/g.sock", security=SECURITY)


def test_the_daemon_refuses_a_symlinked_directory_and_makes_a_missing_one_private(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(TransportError, match="symbolic link"):
        ZmqServerEnd(f"ipc://{tmp_path}/link/g.sock", security=SECURITY)
    server = ZmqServerEnd(f"ipc://{tmp_path}/fresh/g.sock", security=SECURITY)
    server.close()
    mode = (tmp_path / "fresh").stat().st_mode & 0o777
    assert mode == (0o755 if os.geteuid() == 0 else 0o700)


def test_the_client_refuses_to_connect_into_such_a_directory(shared, tmp_path, monkeypatch):
    (shared / "g.sock").touch()  # what a fake daemon's socket looks like from here: a file that exists
    with pytest.raises(DaemonUnreachable, match=r"refusing .*writable by others") as err:
        Client(f"ipc://{shared}/g.sock", timeout_ms=200, retries=0).status()
    assert err.value.code == "untrusted_endpoint"
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    owned_by(monkeypatch, theirs, os.geteuid() + 4242)
    with pytest.raises(DaemonUnreachable, match="neither root nor you"):
        client_check(f"ipc://{theirs}/g.sock")
    client_check(f"ipc://{tmp_path}/g.sock")  # our own private directory: fine
    client_check("tcp://127.0.0.1:5555")  # not a directory matter


def test_the_default_endpoint_passes_over_an_untrusted_runtime_directory(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    (xdg / "governor").mkdir(parents=True)
    (xdg / "governor").chmod(0o777)
    (xdg / "governor/governor.sock").touch()
    monkeypatch.delenv("GOVERNOR_ENDPOINT", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
    trusted = tmp_path / "run"
    trusted.mkdir(mode=0o755)
    (trusted / "governor.sock").touch()
    exists = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda path: exists(str(path).replace("/run/governor", str(trusted))))
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path, *a, **k: real_lstat(
        str(path).replace("/run/governor", str(trusted)), *a, **k))
    assert default_endpoint() == "ipc:///run/governor/governor.sock"  # not the 777 one listed first
    monkeypatch.setattr(os.path, "exists", exists)
    assert default_endpoint() == f"ipc://{xdg}/governor/governor.sock"  # the only one: connecting says why
