"""Running the daemon for the reliability tests: in this process (faults) or as a subprocess (crashes, soak).

:class:`LiveApp` is ``governor serve`` minus signal handling: :func:`governor.daemon.app.build_app`
(leftover restore, baseline state file, drivers, cached profile, ZeroMQ on an ipc socket) with the
loop on a thread and :meth:`App.shutdown` at the end, so a test can inject faults between steps and
still exercise the real restore path. Subprocess daemons come from :func:`benchmarks.soak.start_daemon`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from governor_client import Client

BOARD = "jetson-nano"
MODEL_NAME = "quick"  # the profile cache is keyed by the model file's stem


def short_dir(prefix: str) -> Path:
    """A fresh directory with a short path (ipc socket paths must stay under ~100 bytes), in RAM if
    possible: the fake kernel renames a file per write, which costs ~4 ms on this VM's disk."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    return sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))


def wait_for(check: Callable[[], Any], timeout_s: float = 10.0, what: str = "a condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class LiveApp:
    """The daemon's composition root in this process, its loop on a thread (see the module doc)."""

    def __init__(self, root: Path, model: Path, work: Path, *, board: str = BOARD, tick_hz: float = 20.0,
                 idle_clocks: str = "keep") -> None:
        from governor.daemon.app import build_app
        from governor.daemon.config import Config

        self.endpoint = f"ipc://{work}/g.sock"
        self.state_file = work / "state.json"
        config = Config().with_overrides(endpoint=self.endpoint, board=board, sysfs_root=str(root), model=str(model),
                                         state_file=str(self.state_file), tick_hz=tick_hz)
        # These tests watch the clocks a request pinned between requests, so by default the daemon keeps them;
        # handing them back when idle ("release", the shipped default) is covered in tests/daemon.
        config = config.model_copy(update={"policy": config.policy.model_copy(update={"idle_clocks": idle_clocks})})
        self.app = build_app(config, say=lambda _line: None)
        self.loop_error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="daemon-loop", daemon=True)
        self.stopped = False

    def start(self) -> LiveApp:
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.app.daemon.step()
        except BaseException as exc:  # the test asserts there was none: a crash of the loop is a finding
            self.loop_error = exc

    def client(self) -> Client:
        return Client(self.endpoint, timeout_ms=20000, retries=0)

    def stop(self) -> BaseException | None:
        """Stop the loop and run the daemon's shutdown (restore, state file); returns what it raised."""
        self.stopped = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(20)
        try:
            self.app.shutdown()
        except Exception as exc:
            return exc
        return None

    def __enter__(self) -> LiveApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if not self.stopped:
            self.stop()
