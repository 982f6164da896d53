"""Composition root of ``governor serve``: config -> board -> baseline -> model -> table -> transport -> loop.

Startup order matters and is the same every time:

1. the config was validated before this module is reached (no hardware write yet);
2. a baseline left by a crashed run is restored first (``restore_leftover``);
3. the board is opened and the baseline of every domain we may touch is written to the state file
   *before* the first write;
4. model, executor and the table of operating points are prepared (training the bundled model and
   measuring the host table on first start);
5. the sockets are bound and READY is sent.

Shutdown (a SIGTERM/SIGINT flag, or a fatal error) runs exactly one path: stop taking requests,
restore the baseline, remove the state file, unlink the sockets, STOPPING.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from governor.core.board import profile_label
from governor.core.modelmeta import ModelMeta
from governor.daemon.backend import Backend, HostBackend, SimBackend
from governor.daemon.boardlock import hold_board
from governor.daemon.config import Config, default_profile_path, default_runtime_dir, default_state_dir
from governor.daemon.lifecycle import Flags, Notifier, install_signal_handlers
from governor.daemon.service import Daemon, DaemonParts
from governor.daemon.statefile import clear_state, load_state, save_state, unrestored_note
from governor.daemon.tables import MeasuredTable, host_points, measure_table
from governor.daemon.target import Target, open_target
from governor.drivers.board import RestoreError
from governor.drivers.hotplug import CpuHotplug

__all__ = ["App", "build_app", "open_backend", "restore_leftover"]

log = logging.getLogger("governor.app")


def restore_leftover(state_path: Path) -> str | None:
    """Put back a baseline a crashed daemon left; returns what was restored (None if nothing)."""
    saved = load_state(state_path)
    if saved is None:
        return None
    if saved.board.startswith("sim:"):
        clear_state(state_path)  # a simulated board died with its process: nothing real to restore
        return f"dropped the state of simulated board {saved.board}"
    target = open_target(saved.board, saved.sysfs_root)
    try:
        present = {b.owner for b in target.board.snapshot()}
        target.board.restore([b for b in saved.baselines if b.owner in present])
    finally:
        target.close()
    done = f"restored the baseline of {saved.board} left by pid {saved.pid}"
    missing = [b.owner for b in saved.baselines if b.owner not in present]
    if missing:
        # A part that is gone (driver unloaded, node vanished) cannot be written; failing here would keep
        # every later start from running. Its baseline is moved aside, never dropped.
        kept = state_path.with_name(state_path.name + ".unrestored")
        os.replace(state_path, kept)
        return (f"{done}, except {', '.join(missing)}: not on this board now (driver unloaded? not root?); "
                f"their baseline is kept in {kept}: once they are back, run `governor restore --state-file {kept}`")
    clear_state(state_path)
    return done


@dataclass
class App:
    config: Config
    target: Target
    daemon: Daemon
    server: Any
    notifier: Notifier
    flags: Flags
    baselines: list[Any]
    state_path: Path
    board_arg: str
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def serve(self) -> int:
        previous = install_signal_handlers(self.flags)
        self.notifier.ready(f"serving {self.daemon.parts.model_name} on {self.target.label}")
        unrestored = False
        try:
            while not self.flags.should_exit:
                self.daemon.step()
        finally:
            try:
                self.shutdown()
            except RestoreError as exc:  # a line saying what stays pinned and what to run, not a traceback
                print(unrestored_note(exc, self.state_path), file=sys.stderr, flush=True)
                unrestored = True
            import signal

            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if unrestored else 0

    def shutdown(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=restoring the board")
        try:
            if self.config.daemon.rollback != "never":
                self.target.board.restore(self.baselines)
            clear_state(self.state_path)
        finally:
            for close in reversed(self._closers):
                try:
                    close()
                except Exception:
                    log.exception("error while closing")
            self.notifier.close()


def build_app(config: Config, *, say: Callable[[str], None] = print) -> App:
    state_path = config.state_file()
    # One daemon per board, before anything is read or written; released last, by the closers below.
    board_lock = hold_board(config.daemon.board, config.daemon.sysfs_root, state_path)
    note = restore_leftover(state_path)
    if note:
        say(note)
    d = config.daemon
    # A served simulated board runs the simulator's demo scenario: co-runners come and go on every unit.
    target = open_target(d.board, d.sysfs_root, clock="real", scenario="demo" if d.board.startswith("sim:") else None)
    closers: list[Callable[[], None]] = [board_lock.release, target.close]
    try:
        # The daemon never changes the CPU online mask (nvpmodel owns it on Jetson), so it neither saves nor
        # restores it: putting it back at exit would undo a power-mode switch made while the daemon ran.
        baselines = [b for b in target.board.snapshot() if b.owner != CpuHotplug.owner]
        save_state(state_path, d.board if target.simulated else target.spec.name, target.root, baselines)
        model_path = Path(d.model) if d.model else _bundled_model(say)
        backend, meta = open_backend(target, model_path)
        closers.append(backend.close)
        table = _table(target, backend, meta, say, _profile_path(config, target, model_path), d.profile_points,
                       model_name=_model_name(model_path), pinned=bool(d.profile))
        server, endpoint, telemetry = _server(config)
        closers.append(server.close)
        from governor.daemon.metrics import open_metrics

        metrics = open_metrics(config.metrics.enabled, config.metrics.host, config.metrics.port,
                               board=target.spec.name, simulated=target.simulated)
        closers.append(metrics.close)
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    say(f"serving on {endpoint} (telemetry {telemetry}); board {target.label}; model {model_path.name}")
    notifier = Notifier()
    parts = DaemonParts(
        spec=target.spec, board=target.board, backend=backend, meta=meta, model_name=_model_name(model_path),
        table=table, server=server, tick_hz=d.tick_hz, max_bytes=d.max_message_bytes, max_queue=d.max_queue,
        hysteresis=config.policy.hysteresis, idle_clocks=config.policy.idle_clocks,
        park_s=config.policy.park_ms / 1000.0,
        min_margin=config.policy.min_margin, max_margin=config.policy.max_margin,
        residual_alpha=config.policy.residual_alpha,
        table_hz={name: tuple(dom.available_hz()) for name, dom in target.board.domains.items()},
        switch_ms=config.policy.switch_ms,
        telemetry_endpoint=telemetry, simulated=target.simulated, cpu_count=os.cpu_count() or 1,
        watchdog=notifier.watchdog, watchdog_interval_s=notifier.watchdog_interval_s if d.watchdog else 0.0,
        unavailable=tuple(f"{k}: {v}" for k, v in target.board.unavailable.items()), metrics=metrics,
    )
    app = App(config, target, Daemon(parts), server, notifier, Flags(), baselines, state_path, d.board)
    app._closers = closers
    return app


def _model_name(path: Path) -> str:
    return path.stem[:64] or "model"


def _bundled_model(say: Callable[[str], None]) -> Path:
    from governor.runtime.bundled import DEFAULT_MODEL_NAME, ensure_default_model

    cache = default_state_dir() / "models"
    if not (cache / DEFAULT_MODEL_NAME).exists():
        say(f"training the bundled digits model into {cache} (first start only, a few seconds)")
    return ensure_default_model(cache)


def open_backend(target: Target, model_path: Path) -> tuple[Backend, ModelMeta]:
    from governor.runtime.executor import Executor, cuda_available

    # Every (k, threads) is exercised while the table is measured, so later switches need no untimed
    # warm-up passes; those would only add to the client's end-to-end time.
    executor = Executor(model_path, warmup_runs=0)
    assert executor.meta is not None
    meta = executor.meta
    if target.simulated:
        from governor.sim import SimExecutor, workload_from_meta

        assert target.sim is not None  # a simulated target carries its simulator
        sim_exec = SimExecutor(target.sim, workload_from_meta(meta))
        return SimBackend(sim_exec, executor, len(meta.classes)), meta
    gpu = None
    if any(u.kind == "gpu" for u in target.spec.units) and cuda_available():
        gpu = Executor(model_path, device="cuda", warmup_runs=0)
    return HostBackend(executor, target.spec, gpu_executor=gpu), meta


def _profile_path(config: Config, target: Target, model_path: Path) -> Path:
    """The profile to load, or to write after measuring it on first start (the state dir is writable
    under systemd; the catalogue's profiles/ is not)."""
    if config.daemon.profile:
        return Path(config.daemon.profile)
    return default_profile_path(_model_name(model_path), profile_label(target.spec.name, target.simulated))


def _table(target: Target, backend: Backend, meta: ModelMeta, say: Callable[[str], None], profile: Path,
           max_points: int = 0, *, model_name: str = "model", pinned: bool = False) -> MeasuredTable:
    if target.simulated or target.board.domains:
        from governor.daemon.profiling import board_table

        return board_table(target, backend, meta, say=say, cache=profile, model_name=model_name,
                           max_points=max_points, pinned=pinned)
    if pinned:  # a profile given by name is never silently left unused
        raise ValueError(f"{profile}: this host has no DVFS domain the governor can set, so it serves a table "
                         "measured at start, not a profile; leave out --profile (daemon.profile)")
    dummy = np.zeros((1, *meta.input_shape), dtype=np.float32)
    points = host_points(target.spec, meta, os.cpu_count() or 1)
    say(f"measuring {len(points)} operating points of this host (threads x groups)")

    def run(point: Any) -> tuple[float, float | None]:
        outcome = backend.run(dummy, point)
        return outcome.latency_ms, outcome.energy_mj

    return measure_table(points, run, meta, reps=15)


def _server(config: Config) -> tuple[Any, str, str]:
    from governor.transport.zmq_server import ServerSecurity, ZmqServerEnd, ipc_path

    endpoint = config.endpoint()
    telemetry = config.daemon.telemetry_endpoint
    if not telemetry:
        path = ipc_path(endpoint)
        base = path.parent if path is not None else default_runtime_dir()
        telemetry = f"ipc://{base / 'governor-telemetry.sock'}"
    a = config.access
    security = ServerSecurity(a.socket_mode, a.socket_group, a.curve_server_secret, a.curve_authorized_dir,
                              a.curve_allow_any)
    return ZmqServerEnd(endpoint, telemetry, security=security, max_bytes=config.daemon.max_message_bytes,
                       busy_poll_us=config.daemon.busy_poll_us), \
        endpoint, telemetry
