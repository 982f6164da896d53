"""Building the daemon loop and its machine in tests, with single settings changed from the config's defaults."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from governor.daemon.backend import HostBackend
from governor.daemon.config import Config, machine_settings
from governor.daemon.service import Daemon, assemble
from governor.daemon.tables import host_points, measure_table
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree
from governor.transport.inproc import InprocPair

_SETTINGS = {"hysteresis", "switch_ms", "min_margin", "max_margin", "residual_alpha", "idle_clocks", "park_s",
             "idle_grace_s", "max_queue"}


def make_daemon(*, spec: Any, board: Any, backend: Any, meta: Any, model_name: str, table: Any, server: Any,
                table_hz: Any = None, cpu_count: int = 1, config: Config | None = None, **kw: Any) -> Daemon:
    """``governor.daemon.service.assemble`` with the config's defaults; machine settings (``park_s``,
    ``idle_clocks``, ...) and :class:`DaemonParts` fields may be given by name."""
    settings = {k: kw.pop(k) for k in list(kw) if k in _SETTINGS}
    if hasattr(server, "publish") and "telemetry" not in kw:
        kw["telemetry"] = server.publish
    return assemble(spec, board, backend, meta, model_name, table, server,
                    machine_settings(config or Config(), **settings), table_hz=table_hz, cpu_count=cpu_count, **kw)


def stamp_requests(daemon: Daemon, stamps: list[float]) -> None:
    """Record the arrival time (daemon clock, s) the loop hands the machine with every queued request."""
    from governor.core.decision.machine import Request

    handle = daemon.machine.handle

    def recording(event: Any) -> Any:
        if isinstance(event, Request) and not event.advise:
            stamps.append(event.t)
        return handle(event)

    daemon.machine.handle = recording  # type: ignore[method-assign]


@contextlib.contextmanager
def serving(tmp_path: Path, quick_model: Path, config: Config | None = None, **parts: Any) -> Iterator[Any]:
    """The daemon loop stepping in a thread on a fake host tree; yields (daemon, pair, meta)."""
    from governor.runtime.executor import Executor

    make_fake_tree(load_board("host"), tmp_path)
    target = open_target("host", str(tmp_path))
    executor = Executor(quick_model)
    backend = HostBackend(executor, target.spec)
    meta = executor.meta
    dummy = np.zeros((1, *meta.input_shape), dtype=np.float32)
    points = [pt for pt in host_points(target.spec, meta, 2) if pt.threads == 1]
    table = measure_table(points, lambda pt: (backend.run(dummy, pt).latency_ms, None), meta, reps=3)
    pair = InprocPair()
    d = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="quick",
                    table=table, server=pair.server, tick_hz=50, max_queue=4, cpu_count=2, config=config,
                    **parts)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            d.step()

    th = threading.Thread(target=loop, daemon=True)
    th.start()
    try:
        yield d, pair, meta
    finally:
        stop.set()
        th.join(5)
        executor.close()
        target.close()
