"""Composition root of ``governor serve``: config -> checks -> baseline -> model -> table -> loop.

Startup order matters and is the same every time:

1. the config was validated before this module is reached; the signal handlers go in first, so that
   SIGTERM, like SIGINT, unwinds start-up through every restore and clean-up below;
2. checks that need no measurement, before anything is written: the board lock, a damaged leftover
   state file, the board itself, the model file's header, the sockets (bound now: a clash with a
   live daemon or a TCP endpoint without CURVE keys fails here) and the metrics port;
3. a baseline left by a crashed run is restored (``restore_leftover``);
4. the baseline of every domain we may touch is written to the state file *before* the first write;
5. model, executor and the table of operating points are prepared (training the bundled model and
   profiling or measuring the host table on first start); then READY is sent.

A failure (or a signal) anywhere in 2-5 leaves nothing behind: the board as found, no state file of
ours, no socket file. Shutdown (a SIGTERM/SIGINT flag, or a fatal error) runs exactly one path: stop
taking requests, restore the baseline, remove the state file, unlink the sockets, STOPPING.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from governor.core.board import profile_label
from governor.core.modelmeta import ModelFileError, ModelMeta, read_model_meta
from governor.daemon.backend import Backend, HostBackend, SimBackend
from governor.daemon.boardlock import hold_board
from governor.daemon.config import (
    Config,
    default_profile_path,
    default_runtime_dir,
    default_state_dir,
    machine_settings,
)
from governor.daemon.lifecycle import Flags, Notifier, SignalRoute, system_shutting_down
from governor.daemon.service import Daemon, assemble
from governor.daemon.statefile import StateFileError, clear_state, load_state, save_state, unrestored_note
from governor.daemon.tables import MeasuredTable, host_points, measure_table
from governor.daemon.target import Target, open_target
from governor.drivers.board import RestoreError
from governor.drivers.hotplug import CpuHotplug

if TYPE_CHECKING:
    from governor.transport.zmq_server import ZmqServerEnd

__all__ = ["App", "build_app", "check_model_file", "open_backend", "restore_leftover"]

log = logging.getLogger("governor.app")


def restore_leftover(state_path: Path) -> str | None:
    """Put back a baseline a crashed daemon left; returns what was restored (None if nothing)."""
    saved = load_state(state_path)
    if saved is None:
        return None
    if saved.board.startswith("sim:"):
        clear_state(state_path)  # a simulated board died with its process: nothing real to restore
        return (f"removed {state_path}: a daemon on simulated board {saved.board} (pid {saved.pid}, no longer "
                "running) left it, and a simulated board has nothing to restore")
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
    server: ZmqServerEnd
    notifier: Notifier
    flags: Flags
    baselines: list[Any]
    state_path: Path
    _closers: list[Callable[[], None]] = field(default_factory=list)
    shutting_down: Callable[[], bool] = system_shutting_down  # for rollback = "not_on_shutdown"

    def serve(self) -> int:
        self.notifier.ready(f"serving {self.daemon.parts.model_name} on {self.target.label}")
        unrestored = False
        try:
            while not self.flags.should_exit:
                if self.flags.reload:  # SIGHUP: what was learned at run time is forgotten, as by `reload`
                    self.flags.reload = False
                    self.daemon.reset_learning()
                    log.info("SIGHUP: the run-time corrections (residuals, margins, co-runner shares) were reset")
                self.daemon.step()
        finally:
            try:
                self.shutdown()
            except RestoreError as exc:  # a line saying what stays pinned and what to run, not a traceback
                print(unrestored_note(exc, self.state_path), file=sys.stderr, flush=True)
                unrestored = True
        return 1 if unrestored else 0

    def shutdown(self) -> None:
        self.notifier.send("STOPPING=1", "STATUS=restoring the board")
        try:
            rollback = self.config.daemon.rollback
            # During a system shutdown the kernel resets every clock at the next boot anyway; the state file
            # goes too, or the unit's ExecStopPost (governor restore) would put the board back regardless.
            if rollback == "always" or (rollback == "not_on_shutdown" and not self.shutting_down()):
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
    """Start the daemon up to READY (module doc). Any failure, or SIGTERM/SIGINT on the way, leaves the
    board as it was found and nothing behind (no state file, no socket file), then raises."""
    d = config.daemon
    state_path = config.state_file()
    # Before any work: SIGTERM during first-start profiling must restore the board, as SIGINT does.
    signals = SignalRoute(Flags(), state_file=state_path).install()
    closers: list[Callable[[], None]] = [signals.uninstall]
    state = _StartState(state_path)
    try:
        # Checks that need no measurement, so that a bad config, key, socket or model fails in well under
        # a second and before anything is written.
        # One daemon per board, before anything is read or written; released last, by the closers below.
        board_lock = hold_board(d.board, d.sysfs_root, state_path)
        closers.append(board_lock.release)
        load_state(state_path)  # a damaged leftover is refused here, before any work
        # A served simulated board runs the simulator's demo scenario: co-runners come and go on every unit.
        target = open_target(d.board, d.sysfs_root, clock="real",
                             scenario="demo" if d.board.startswith("sim:") else None, sensors=config.sensors.source)
        closers.append(target.close)
        if d.engine == "external" and not d.model:
            raise ValueError("engine = external needs --model MODEL.dgm: the file of the network your application "
                             "runs (only its metadata is read; no torch is loaded)")
        if d.model:
            check_model_file(Path(d.model))
        if d.engine == "external" and d.profile and not Path(d.profile).exists():
            raise ValueError(f"{d.profile}: no such profile; with engine = external the daemon cannot measure one "
                             f"itself: make it with `governor profile MODEL --board BOARD --out {d.profile}`")
        if d.profile:  # a named profile that is not there fails now, not after training the bundled model
            from governor.daemon.profiling import check_named_profile

            check_named_profile(Path(d.profile))
        server, endpoint, telemetry = _server(config)  # bound now: a clash or a refused TCP config fails here
        closers.append(server.close)
        from governor.daemon.metrics import open_metrics

        metrics = open_metrics(config.metrics.enabled, config.metrics.host, config.metrics.port,
                               board=target.spec.name, simulated=target.simulated)
        closers.append(metrics.close)

        # The work: put back what a dead daemon left, save the baseline before the first write, then the
        # model and the table (training the bundled model and profiling at first start).
        note = restore_leftover(state_path)
        if note:
            say(note)
        # The daemon never changes the CPU online mask (nvpmodel owns it on Jetson), so it neither saves nor
        # restores it: putting it back at exit would undo a power-mode switch made while the daemon ran.
        def save_baseline() -> None:
            baselines = [b for b in target.board.snapshot() if b.owner != CpuHotplug.owner]
            state.save(d.board if target.simulated else target.spec.name, target.root, baselines)

        save_baseline()
        state.touched = target.board
        # Only now, with railgate_enable as found in the state file, may a rail-gated GPU be held up; a
        # domain that joins is saved before anything writes its clock.
        held = target.board.hold_power()
        for line in held:
            log.info("%s", line)
        if held:
            save_baseline()
        if d.engine == "external":
            model_path = Path(d.model)
            backend, meta, table, served_name = _external(config, target, model_path, say)
        else:
            model_path = Path(d.model) if d.model else _bundled_model(say)
            served_name = _model_name(model_path)
            backend, meta = open_backend(target, model_path)
            closers.append(backend.close)
            state.touched = target.board  # profiling writes the clocks (and restores them itself when it ends)
            table = _table(target, backend, meta, say, _profile_path(config, target, model_path), d.profile_points,
                           model_name=served_name, pinned=bool(d.profile))
        notifier = Notifier()
        daemon = assemble(
            target.spec, target.board, backend, meta, served_name, table, server, machine_settings(config),
            cpu_count=os.cpu_count() or 1, tick_hz=d.tick_hz, max_bytes=d.max_message_bytes, telemetry=server.publish,
            lease_ttl_ms=d.lease_ttl_ms, stream_ttl_ms=d.stream_ttl_ms,
            telemetry_wanted=server.wants,
            telemetry_endpoint=telemetry, simulated=target.simulated, watchdog=notifier.watchdog,
            watchdog_interval_s=notifier.watchdog_interval_s if d.watchdog else 0.0,
            unavailable=tuple(f"{k}: {v}" for k, v in target.board.unavailable.items()), metrics=metrics)
        app = App(config, target, daemon, server, notifier, signals.flags, state.baselines, state_path)
        app._closers = closers
        signals.flag_only()  # from here a signal only sets the flag; the serving loop stops on it
    except BaseException:
        signals.flag_only()  # a signal now must not break into the clean-up
        state.abandon(say)
        for close in reversed(closers):
            try:
                close()
            except Exception:
                log.exception("error while cleaning up after a failed start")
        raise
    say(f"serving on {endpoint} (telemetry {telemetry}); board {target.label}; model {model_path.name}")
    return app


class _StartState:
    """The state file as start-up left it: cleared again when start-up fails, unless the board could not
    be put back (then the file is what ``governor restore`` needs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.baselines: list[Any] = []
        self.saved = False
        self.touched: Any = None  # the board, once something may have written it

    def save(self, board: str, root: str, baselines: list[Any]) -> None:
        try:
            save_state(self.path, board, root, baselines)
        except OSError as exc:
            raise StateFileError(f"cannot write the state file {self.path} ({exc.strerror}); the daemon keeps "
                                 "the board's baseline there before it writes anything: make its directory "
                                 "writable, or set --state-file (state_file in the config)") from exc
        self.baselines, self.saved = baselines, True

    def abandon(self, say: Callable[[str], None]) -> None:
        if not self.saved:
            return  # a leftover of a dead daemon that was not restored yet stays for the next start
        if self.touched is not None:
            try:
                self.touched.restore(self.baselines)
            except Exception as exc:
                say(f"could not put the board back ({exc}); its baseline stays in {self.path}: run "
                    f"`governor restore --state-file {self.path}`")
                return
        clear_state(self.path)


def check_model_file(path: Path) -> None:
    """Read and validate a model file's header (its metadata) without loading torch: a wrong path or a
    file that is not a model fails in milliseconds, before any work. Raises ModelFileError."""
    try:
        with path.open("rb") as f:
            read_model_meta(f)
    except FileNotFoundError as exc:
        raise ModelFileError(f"model file {path} does not exist; train one with `governor train`") from exc
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read the model file {path}: {exc.strerror}") from exc


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


def _external(config: Config, target: Target, model_path: Path,
              say: Callable[[str], None]) -> tuple[Backend, ModelMeta, MeasuredTable, str]:
    """The parts of a daemon whose application runs the model: its metadata and the profile, no torch,
    and the name it serves the model under: the profile's (`governor profile --external NAME`). With no
    engine of its own it cannot measure a table, so the profile must exist."""
    import json

    from governor.daemon.backend import ExternalBackend
    from governor.daemon.profiling import board_table

    with model_path.open("rb") as f:
        meta = read_model_meta(f)
    profile = _profile_path(config, target, model_path)
    if not profile.exists():
        board = config.daemon.board if target.simulated else target.spec.name
        raise ValueError(f"engine = external needs a profile of {model_path.name} on this board and none is at "
                         f"{profile}: measure one with `governor profile {model_path} --board {board} --out "
                         f"{profile}` (it runs the model in-process once)")
    backend = ExternalBackend(target.spec)
    try:
        name = str(json.loads(profile.read_text()).get("model") or _model_name(model_path))
    except (OSError, ValueError, AttributeError):
        name = _model_name(model_path)  # board_table says what is wrong with the file
    table = board_table(target, backend, meta, say=say, cache=profile, model_name=name, pinned=True)
    return backend, meta, table, name


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


def _server(config: Config) -> tuple[ZmqServerEnd, str, str]:
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
