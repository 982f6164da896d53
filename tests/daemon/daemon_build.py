"""Building the daemon loop and its machine in tests, with single settings changed from the config's defaults."""

from __future__ import annotations

from typing import Any

from governor.daemon.config import Config, machine_settings
from governor.daemon.service import Daemon, assemble

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
