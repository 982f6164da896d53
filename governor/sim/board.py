"""A simulated board: a fake tree with the simulator playing the kernel behind it.

Theory of operation
-------------------
:func:`open_sim_board` builds the catalogue board's fake tree (:func:`governor.testing.make_fake_tree`)
and a :class:`SimBoard` on it. Software drives it only through the real drivers
(:meth:`SimBoard.open_drivers`, or ``governor.drivers.board.open_board`` on ``sim.sysfs``); the
simulator reads the files they wrote, advances its engine and publishes what sensors would show.

Time is one of two clocks. With a :class:`~governor.sim.clock.VirtualClock` nothing moves until
:meth:`SimBoard.advance` (benchmarks run far faster than real time). With a
:class:`~governor.sim.clock.RealClock` the board catches up to the wall clock on every
:meth:`SimBoard.sync`: the driver bundle from :meth:`open_drivers` syncs before each sample, or
:meth:`start` runs a background thread that syncs every ``period_s``. One lock serialises all of it.
Every observation the driver bundle returns is marked ``simulated=True``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any

from governor.core.board import SIM_PREFIX, BoardSpec, sim_board_name
from governor.core.types import Observation
from governor.drivers.board import Applied, Board, open_board
from governor.drivers.catalogue import load_board
from governor.sim.boards import BoardPhysics, board_physics
from governor.sim.clock import RealClock, SimClock, VirtualClock
from governor.sim.engine import Engine
from governor.sim.kernel import TreeBridge, discovered_spec
from governor.sim.scenario import Scenario
from governor.sim.values import Job, Truth
from governor.testing import FakeTree, make_fake_tree

__all__ = ["SIM_PREFIX", "SimBoard", "SimDriverBoard", "open_sim_board", "sim_board_name"]

class SimBoard:
    """One simulated catalogue board (see the module doc). ``simulated`` is always True."""

    simulated = True

    def __init__(self, spec: BoardSpec, tree: FakeTree, *, clock: SimClock | None = None, seed: int = 0,
                 scenario: Scenario | None = None, physics: BoardPhysics | None = None) -> None:
        self.catalogue_spec = spec
        spec, domain_cpus = discovered_spec(spec, tree)
        self.spec, self.tree, self.seed = spec, tree, seed
        self.clock: SimClock = clock if clock is not None else VirtualClock()
        self.physics = physics or board_physics(spec, domain_cpus)
        self.engine = Engine(spec, self.physics, start_s=self.clock(), scenario=scenario)
        self.kernel = TreeBridge(tree, spec, self.engine, seed=seed)
        self.lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._owned_dir: Path | None = None
        self._dirty = False
        self.refresh()

    def __repr__(self) -> str:
        return f"SimBoard({self.name!r}, t={self.engine.t:.3f}, clock={type(self.clock).__name__})"

    @property
    def name(self) -> str:
        return SIM_PREFIX + self.spec.name

    @property
    def sysfs(self) -> Any:
        return self.tree.sysfs

    @property
    def root(self) -> Path:
        return Path(self.tree.root)

    # ---- time -------------------------------------------------------------------------------
    def _run_to(self, t: float) -> Truth:
        with self.lock:
            self.kernel.read_controls()
            self.engine.advance(t)
            self.kernel.publish()
            self._dirty = False
            return self.engine.truth()

    def advance(self, dt_s: float) -> Truth:
        """Virtual clock only: move time forward by ``dt_s`` seconds and publish."""
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("advance() needs a virtual clock; a real-time board follows the wall clock (sync())")
        with self.lock:
            self.clock.advance(dt_s)
            return self._run_to(self.clock())

    def sync(self) -> Truth:
        """Catch up to the clock (real time, or a virtual clock someone else advanced) and publish."""
        return self._run_to(max(self.clock(), self.engine.t))

    def refresh(self) -> Truth:
        """Re-read the controls and publish the clocks they give, without moving time (a kernel's
        immediate reaction to a limit write)."""
        with self.lock:
            self.kernel.read_controls()
            self.engine.refresh()
            self.kernel.publish()
            self._dirty = False
            return self.engine.truth()

    def settle(self) -> Truth:
        """Re-read the controls and put the board in its idle steady state at the clocks they give, its
        temperatures included, without moving time: for a measurement that must not depend on what ran
        before it (a profiler letting the board settle between points). Without it a sweep's own runs
        heat the board: over a full TX2 grid, leakage moved board power by up to 3 %."""
        with self.lock:
            self.kernel.read_controls()
            self.engine.settle()
            self.kernel.publish()
            self._dirty = False
            return self.engine.truth()

    def truth(self) -> Truth:
        """The simulator's noiseless view now (simulated=True); for reports and tests, not for control."""
        with self.lock:
            return self.engine.truth()

    def set_scenario(self, scenario: Scenario) -> None:
        with self.lock:
            self.engine.scenario = scenario

    def submit(self, job: Job) -> None:
        with self.lock:
            self.engine.jobs.append(job)

    def run_until_done(self, job: Job, limit_s: float) -> None:
        """Virtual clock only: advance exactly to the instant ``job`` finishes (at most ``limit_s`` s)."""
        if not isinstance(self.clock, VirtualClock):
            raise RuntimeError("run_until_done() needs a virtual clock; a real-time board finishes jobs as time passes")
        with self.lock:
            self.kernel.read_controls()
            self.engine.advance(self.engine.t + limit_s, stop=lambda: job.done)
            self.clock.advance(max(0.0, self.engine.t - self.clock()))
            self._dirty = True  # published on the next read through the drivers, advance() or flush()

    def flush(self) -> None:
        """Publish what finished runs left unpublished (the driver bundle does this before each read)."""
        with self.lock:
            if self._dirty:
                self.kernel.publish()
                self._dirty = False

    # ---- real time in the background ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, period_s: float = 0.05) -> SimBoard:
        """Sync every ``period_s`` s from a daemon thread (real-time boards; a no-op if running)."""
        if isinstance(self.clock, VirtualClock):
            raise RuntimeError("a virtual-clock board moves only with advance(); use clock='real' to run live")
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, args=(period_s,), name=f"{self.name}-kernel",
                                            daemon=True)
            self._thread.start()
        return self

    def _loop(self, period_s: float) -> None:
        while not self._stop.wait(period_s):
            self.sync()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def close(self) -> None:
        """Stop the thread and delete the tree if :func:`open_sim_board` made its directory."""
        self.stop()
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None

    def __enter__(self) -> SimBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the drivers ---------------------------------------------------------------------------
    def open_drivers(self, *, mode: str = "limits") -> SimDriverBoard:
        """The real drivers, opened on this board's tree with its clock, marking observations simulated."""
        board = open_board(self.catalogue_spec, self.sysfs, clock=self.clock, mode=mode)  # type: ignore[arg-type]
        return SimDriverBoard(board, self)


class SimDriverBoard:
    """A :class:`~governor.drivers.board.Board` on a simulated tree: same calls, simulated results.

    ``sample`` first lets a real-time board without a background thread catch up, and marks the
    observation ``simulated=True``; ``apply`` lets the kernel react to the writes before reading
    back. Everything else is the drivers' own board.
    """

    simulated = True

    def __init__(self, board: Board, sim: SimBoard) -> None:
        self.board, self.sim = board, sim

    # What callers read of the drivers' board, read through (the drivers drop parts that vanish).
    @property
    def spec(self) -> Any:
        return self.board.spec

    @property
    def sysfs(self) -> Any:
        return self.board.sysfs

    @property
    def domains(self) -> dict[str, Any]:
        return self.board.domains

    @property
    def power(self) -> list[Any]:
        return self.board.power

    @property
    def thermal(self) -> list[Any]:
        return self.board.thermal

    @property
    def hotplug(self) -> Any:
        return self.board.hotplug

    @property
    def unavailable(self) -> dict[str, str]:
        return self.board.unavailable

    @property
    def probes(self) -> dict[str, Any]:
        return self.board.probes

    @property
    def source_choice(self) -> Any:
        return self.board.source_choice

    def snapshot(self) -> list[Any]:
        return self.board.snapshot()

    def restore(self, baselines: Any) -> None:
        self.board.restore(baselines)

    def hold_power(self) -> list[str]:
        return self.board.hold_power()

    def close(self) -> None:
        self.board.close()

    def __repr__(self) -> str:
        return f"SimDriverBoard({self.sim.name!r}, {self.board!r})"

    def sample(self) -> Observation:
        if isinstance(self.sim.clock, RealClock) and not self.sim.running:
            self.sim.sync()
        with self.sim.lock:
            self.sim.flush()
            return dataclasses.replace(self.board.sample(), simulated=True)

    def apply(self, setpoints: Any) -> Applied:
        with self.sim.lock:
            self.sim.flush()
            applied = self.board.apply(setpoints)
            self.sim.refresh()
            readings = {name: self.board.domains[name].read() for name in applied}
            return Applied(readings, applied.errors)


def open_sim_board(name: str, *, directory: str | Path | None = None, clock: str | SimClock = "virtual",
                   seed: int = 0, scenario: str | Scenario | None = None, hwmon_base: int = 0,
                   ambient_c: float | None = None) -> SimBoard:
    """Build ``sim:<board>`` (or a bare catalogue name): its fake tree and the simulator behind it.

    ``directory`` holds the tree (default: a temporary directory removed by :meth:`SimBoard.close`);
    ``clock`` is ``"virtual"``, ``"real"`` or a clock object; ``scenario`` is a
    :class:`~governor.sim.scenario.Scenario` or one of ``"idle"``, ``"demo"``, ``"random"`` (seeded);
    ``ambient_c`` overrides the board's ambient temperature (a hot enclosure), °C.
    """
    spec = load_board(sim_board_name(name) or name)
    owned = directory is None
    if directory is None:
        where = Path(tempfile.mkdtemp(prefix=f"governor-sim-{spec.name}-", dir=_memory_dir()))
    else:
        where = Path(directory)
    tree = make_fake_tree(spec, where, hwmon_base=hwmon_base, seed=seed)
    physics = None
    if ambient_c is not None:
        base = board_physics(*discovered_spec(spec, tree))
        physics = dataclasses.replace(base, thermal=dataclasses.replace(base.thermal, ambient_c=ambient_c))
    sim = SimBoard(spec, tree, clock=_clock(clock), seed=seed, scenario=_scenario(scenario, spec, seed),
                   physics=physics)
    if owned:
        sim._owned_dir = where
        weakref.finalize(sim, shutil.rmtree, where, ignore_errors=True)  # a board never closed still cleans up
    return sim


def _memory_dir() -> str | None:
    """A RAM-backed temp dir (``/dev/shm``) where there is one: the kernel publishes many tiny files
    per step, and a disk-backed rename costs ~4 ms against ~0.05 ms in tmpfs (sysfs is RAM too)."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _clock(clock: str | SimClock) -> SimClock:
    if isinstance(clock, VirtualClock | RealClock):
        return clock
    if clock == "virtual":
        return VirtualClock()
    if clock == "real":
        return RealClock()
    raise ValueError(f"clock must be 'virtual', 'real' or a clock object, not {clock!r}")


def _scenario(scenario: str | Scenario | None, spec: BoardSpec, seed: int) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    units = [u.name for u in spec.units]
    if scenario in (None, "idle"):
        return Scenario.idle()
    if scenario == "demo":
        return Scenario.demo(units)
    if scenario == "random":
        return Scenario.random(units, seed=seed, duration_s=3600.0)
    raise ValueError(f"unknown scenario {scenario!r}; use idle, demo, random or a Scenario object")
