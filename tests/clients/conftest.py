"""Fixtures for the client tests: a fake daemon on an ipc socket in a short temporary directory."""

from __future__ import annotations

import pytest
from clients_fake_daemon import FakeDaemon


@pytest.fixture
def ipc_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ipc")  # short: ipc paths are limited to ~100 characters


@pytest.fixture
def daemon(ipc_dir):
    fake = FakeDaemon(str(ipc_dir / "gov.sock")).start()
    yield fake
    fake.stop()
