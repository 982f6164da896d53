"""Live sensor sources on a Jetson (jtop, tegrastats) next to the sysfs drivers: choice and merge.

Theory of operation
-------------------
``[sensors] source`` in the daemon's config names where readings come from:

* ``sysfs``: only the sysfs drivers of :mod:`governor.drivers.board` (rails, zones, /proc/stat, GPU load).
* ``jtop``: the jetson-stats service (:class:`~governor.drivers.jtop.JtopSensors`) over the sysfs drivers.
* ``tegrastats``: a ``tegrastats --interval MS`` child process (:class:`TegrastatsSensors`) over them.
* ``auto`` (default): jtop when its service answers on ``/run/jtop.sock`` and the ``jtop`` package
  imports; else tegrastats when the board is a Jetson and a ``tegrastats`` binary (on PATH or
  ``/usr/bin/tegrastats``) starts and prints a line; else sysfs. ``auto`` looks for a live source only
  on the real root ``/``: a live source reads the machine it runs on, which is not a fake tree or a
  copy under ``--sysfs-root``. A source named explicitly that cannot be used is a start-up error
  (:class:`SourceError`) that says what to do; under ``auto`` the reason it was passed over is kept
  in the choice note (``governor status`` shows it).

The merge (:func:`merge`), per sweep, with ``s`` the sysfs sweep and ``L`` the live source's:

* ``domains`` (current/min/max Hz, kernel governor): from ``s`` only. They are the read-back of what
  the governor set; the live sources print truncated MHz (tegrastats) or a copy of the same files.
* ``power_mw``, ``temps_c``, ``util``: per key, ``L`` wins where it has the key and ``s`` fills in the
  keys ``L`` lacks (``{**s, **L}``): rail names, catalogue zone types and compute-unit names are
  shared by both (:class:`~governor.drivers.tegrastats.SensorMapping` renames the live names).
* ``total_power_mw``: ``L``'s when it has one, else ``s``'s, else None.
* ``unavailable``: ``L``'s problems (prefixed with the source's name), then ``s``'s, except the
  sysfs problems of a category (power, thermal, load) in which ``L`` supplied at least one reading
  this sweep: that category is not missing from the observation. A live source that is stale or
  lost gives no readings and one problem, so that sweep is the sysfs sweep plus that one line.

Units as in :class:`~governor.core.types.Observation`: mW, °C, busy fractions 0..1, Hz, seconds.

The tegrastats child writes one line per interval to a pipe; a reader thread parses each line and
keeps the latest with the monotonic time it arrived. A sample older than ``stale_intervals``
intervals (3 by default), or a child that exited, is reported in ``unavailable``, never raised.
:meth:`TegrastatsSensors.close` terminates and reaps the child (kill after a grace period); a
daemon killed outright leaves a child that dies of SIGPIPE at its next line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from governor.core.board import BoardSpec
from governor.core.types import Observation, frozen_map
from governor.drivers.base import Probe, ProbeResult
from governor.drivers.jtop import INSTALL_HINT, JTOP_SOCKET, RESTART_HINT, JtopSensors, jtop_available
from governor.drivers.tegrastats import SensorMapping, TegrastatsSample, parse_tegrastats, to_observation

if TYPE_CHECKING:
    from governor.drivers._sysfs import SysfsRoot

__all__ = [
    "SOURCES", "TEGRASTATS_FALLBACK", "LiveSource", "SourceChoice", "SourceError", "TegrastatsSensors", "choose_source",
    "merge", "tegrastats_executable",
]

SourceName = Literal["auto", "sysfs", "jtop", "tegrastats"]
SOURCES: tuple[str, ...] = ("auto", "sysfs", "jtop", "tegrastats")
TEGRASTATS_FALLBACK = "/usr/bin/tegrastats"  # L4T installs it there; root's PATH may lack /usr/bin on some units
SYSFS_HINT = 'or set [sensors] source = "sysfs" (the sysfs drivers alone)'


class SourceError(RuntimeError):
    """A sensor source named in the config cannot be used; ``str()`` says what to do."""


class LiveSource(Protocol):
    """What :class:`~governor.drivers.board.Board` needs of a live source: one non-raising sweep, and close."""

    name: str

    def observe(self, t: float) -> Observation: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SourceChoice:
    """The source in use (``name``: sysfs, jtop or tegrastats), where it reads, and why it was chosen."""

    name: str
    where: str = ""
    note: str = ""
    tried: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        return self.name + (f" ({self.where})" if self.where else "") + (f"; {self.note}" if self.note else "")


# --- tegrastats as a child process ------------------------------------------------------------------------------


def tegrastats_executable() -> str | None:
    """Path of a runnable ``tegrastats``: the first on PATH, else :data:`TEGRASTATS_FALLBACK`; None if neither."""
    found = shutil.which("tegrastats")
    if found:
        return found
    return TEGRASTATS_FALLBACK if os.access(TEGRASTATS_FALLBACK, os.X_OK) else None


class _Latest:
    """What the reader thread shares with the sweeps (under ``lock``): the latest sample and how the child ended."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrived = threading.Event()  # set at the first parsed line, or at EOF
        self.sample: TegrastatsSample | None = None
        self.at: float | None = None  # monotonic s when ``sample`` arrived
        self.lines = 0
        self.bad_line = ""  # the last line that did not parse (a warning, or an error message)
        self.ended: str | None = None  # set at EOF: how the child ended


def _read(stream: IO[str], proc: subprocess.Popen[str], latest: _Latest, clock: Callable[[], float]) -> None:
    """The reader thread: parse each line, keep the newest; at EOF reap the child and say how it ended."""
    try:
        for line in stream:
            if not line.strip():
                continue
            try:
                sample = parse_tegrastats(line)
            except ValueError:
                with latest.lock:
                    latest.bad_line = line.strip()[:200]
                continue
            with latest.lock:
                latest.sample, latest.at, latest.lines = sample, clock(), latest.lines + 1
            latest.arrived.set()
    except (OSError, ValueError):  # the pipe was closed under us by close()
        pass
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)
    with latest.lock:
        code = proc.returncode
        tail = f" (last output: {latest.bad_line!r})" if latest.bad_line else ""
        latest.ended = (f"tegrastats exited with status {code}{tail}" if code is not None
                        else "tegrastats closed its output")
    latest.arrived.set()


def _stop(proc: subprocess.Popen[str], grace_s: float = 2.0) -> None:
    """Terminate and reap ``proc``: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.terminate()
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait()
    if proc.stdout is not None:
        with contextlib.suppress(OSError):
            proc.stdout.close()


class TegrastatsSensors:
    """Power, thermal and load readings from a ``tegrastats --interval MS`` child (read-only, like jtop).

    ``interval_s`` is the child's print interval in seconds (tegrastats takes milliseconds). A
    sample older than ``stale_intervals`` intervals is stale: :meth:`observe` then gives no readings
    and says why in ``unavailable``. ``clock`` is the monotonic clock (s) used for that age only; an
    observation's ``t`` is the caller's. Call :meth:`start` first and :meth:`close` at the end.
    """

    name = "tegrastats"

    def __init__(self, mapping: SensorMapping | None = None, *, interval_s: float = 1.0,
                 executable: str | None = None, stale_intervals: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s <= 0:
            raise ValueError(f"tegrastats interval must be positive seconds, not {interval_s}")
        self.mapping = mapping or SensorMapping()
        self.interval_s = interval_s
        self.executable = executable
        self.stale_s = stale_intervals * interval_s
        self._clock = clock
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._latest = _Latest()
        self._finalizer: Any = None
        self.problem = "tegrastats is not started: call start() first"

    @property
    def command(self) -> list[str]:
        return [self.executable or "tegrastats", "--interval", str(max(1, round(self.interval_s * 1000)))]

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def probe(self) -> Probe:
        """FAIL when no runnable tegrastats is found (not a Jetson, or L4T's tools not installed)."""
        exe = self.executable or tegrastats_executable()
        if exe is None or not os.access(exe, os.X_OK):
            return Probe(ProbeResult.FAIL, f"no runnable tegrastats on PATH or at {TEGRASTATS_FALLBACK} "
                         "(it comes with L4T on a Jetson)")
        self.executable = exe
        return Probe(ProbeResult.SUCCESS, exe)

    def start(self, first_line_timeout_s: float | None = None) -> Probe:
        """Run the child and wait for its first parsed line (default: 3 intervals + 2 s).

        FAIL if it cannot be run or prints no tegrastats line in time (the child is reaped then)."""
        self.close()
        probe = self.probe()
        if probe.result is not ProbeResult.SUCCESS:
            self.problem = probe.detail
            return probe
        try:
            proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, text=True, bufsize=1)
        except OSError as exc:
            self.problem = f"cannot run {' '.join(self.command)}: {exc}"
            return Probe(ProbeResult.FAIL, self.problem)
        latest = _Latest()
        assert proc.stdout is not None
        thread = threading.Thread(target=_read, args=(proc.stdout, proc, latest, self._clock),
                                  name="tegrastats-reader", daemon=True)
        thread.start()
        self._proc, self._thread, self._latest = proc, thread, latest
        self._finalizer = weakref.finalize(self, _stop, proc)  # a source dropped without close() still reaps
        timeout = 3 * self.interval_s + 2.0 if first_line_timeout_s is None else first_line_timeout_s
        latest.arrived.wait(timeout)
        with latest.lock:
            ok, ended, bad = latest.sample is not None, latest.ended, latest.bad_line
        if not ok:
            why = ended or f"no tegrastats line within {timeout:.1f} s" + (f" (it printed {bad!r})" if bad else "")
            self.close()
            self.problem = f"{' '.join(self.command)}: {why}"
            return Probe(ProbeResult.FAIL, self.problem)
        self.problem = ""
        return Probe(ProbeResult.SUCCESS, f"{' '.join(self.command)} (pid {proc.pid})")

    def close(self) -> None:
        """Stop and reap the child, join the reader thread. Safe to call twice."""
        proc, thread, self._proc, self._thread = self._proc, self._thread, None, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if proc is not None:
            _stop(proc)
            self.problem = "tegrastats was stopped (close())"
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> TegrastatsSensors:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def latest(self) -> tuple[TegrastatsSample | None, float | None]:
        """The newest sample and its age in seconds (None, None before the first line)."""
        with self._latest.lock:
            sample, at = self._latest.sample, self._latest.at
        return sample, (None if at is None else self._clock() - at)

    def observe(self, t: float) -> Observation:
        """The latest line as an Observation at ``t`` (s); stale, ended or never started -> ``unavailable``."""
        if self._proc is None:
            return Observation(t, unavailable=(f"tegrastats: {self.problem}",))
        sample, age = self.latest()
        with self._latest.lock:
            ended = self._latest.ended
        if sample is None or age is None or age > self.stale_s:
            seen = "no line yet" if age is None else f"last line {age:.1f} s ago"
            why = f"{seen}, more than {self.stale_s:.1f} s ({self.stale_s / self.interval_s:g} intervals of " \
                  f"{self.interval_s:g} s)" + (f"; {ended}" if ended else "") + "; readings from sysfs only"
            return Observation(t, unavailable=(f"tegrastats: {why}",))
        obs = to_observation(sample, t, self.mapping)
        return Observation(t, power_mw=obs.power_mw, total_power_mw=obs.total_power_mw, temps_c=obs.temps_c,
                           util=obs.util, unavailable=tuple(f"tegrastats: {p}" for p in obs.unavailable))


# --- choosing a source -------------------------------------------------------------------------------------------


def _is_real_root(sysfs: SysfsRoot) -> bool:
    try:
        return Path(os.path.realpath(sysfs.root)) == Path("/")
    except (AttributeError, OSError, TypeError):
        return False


def _jtop_imports() -> str | None:
    """None if the ``jtop`` package imports, else why not."""
    try:
        import jtop  # noqa: F401  (the optional `jetson` extra)
    except ImportError as exc:
        return f"{INSTALL_HINT} ({exc})"
    return None


def _open_jtop(mapping: SensorMapping, interval_s: float, socket_path: str,
               timeout_s: float) -> tuple[JtopSensors | None, str]:
    missing = _jtop_imports()
    if missing:
        return None, missing
    if not jtop_available(timeout_s, socket_path):
        return None, (f"the jtop service does not answer on {socket_path}: start it ({RESTART_HINT}, "
                      "installed by `sudo pip3 install -U jetson-stats`) and add this user to group jtop")
    sensors = JtopSensors(mapping, interval_s=interval_s, socket_path=socket_path, probe_timeout_s=timeout_s)
    probe = sensors.start()
    if probe.result is not ProbeResult.SUCCESS:
        return None, probe.detail
    return sensors, ""


def _open_tegrastats(spec: BoardSpec, mapping: SensorMapping, interval_s: float,
                     executable: str | None) -> tuple[TegrastatsSensors | None, str]:
    if spec.board.family != "jetson":
        return None, f"tegrastats is for Jetson boards; {spec.name} is a {spec.board.family} board"
    sensors = TegrastatsSensors(mapping, interval_s=interval_s, executable=executable)
    probe = sensors.start()
    if probe.result is not ProbeResult.SUCCESS:
        return None, probe.detail
    return sensors, ""


def choose_source(requested: str, spec: BoardSpec, sysfs: SysfsRoot, *, interval_s: float = 1.0,
                  jtop_socket: str = JTOP_SOCKET, jtop_timeout_s: float = 1.0,
                  tegrastats: str | None = None,
                  real_root: bool | None = None) -> tuple[LiveSource | None, SourceChoice]:
    """The started live source for ``requested`` (None for sysfs) and the choice, said in words.

    ``interval_s`` is the live source's update interval (s); ``tegrastats`` an executable path (default:
    :func:`tegrastats_executable`); ``real_root`` overrides whether ``sysfs`` is the real ``/`` (auto
    only looks for live sources there). Raises :class:`SourceError` for an unknown name, or for jtop
    or tegrastats named explicitly and unusable."""
    if requested not in SOURCES:
        raise SourceError(f"unknown sensor source {requested!r}; use one of {', '.join(SOURCES)}")
    mapping = SensorMapping.from_board(spec)
    exe = tegrastats or tegrastats_executable()
    if requested == "sysfs":
        return None, SourceChoice("sysfs", note="[sensors] source = \"sysfs\"")
    if requested == "jtop":
        jtop, why = _open_jtop(mapping, interval_s, jtop_socket, jtop_timeout_s)
        if jtop is None:
            raise SourceError(f'[sensors] source = "jtop", but {why}; {SYSFS_HINT}')
        return jtop, SourceChoice("jtop", jtop_socket, '[sensors] source = "jtop"')
    if requested == "tegrastats":
        if exe is None:
            raise SourceError('[sensors] source = "tegrastats", but there is no runnable tegrastats on PATH or at '
                              f'{TEGRASTATS_FALLBACK} (it ships with L4T on a Jetson); {SYSFS_HINT}')
        teg, why = _open_tegrastats(spec, mapping, interval_s, exe)
        if teg is None:
            raise SourceError(f'[sensors] source = "tegrastats", but {why}; {SYSFS_HINT}')
        return teg, SourceChoice("tegrastats", " ".join(teg.command), '[sensors] source = "tegrastats"')
    # auto
    if not (_is_real_root(sysfs) if real_root is None else real_root):
        return None, SourceChoice("sysfs", note=f"auto: the root {getattr(sysfs, 'root', sysfs)} is not /, "
                                  "and jtop/tegrastats read the machine itself")
    tried: list[str] = []
    jtop, why = _open_jtop(mapping, interval_s, jtop_socket, jtop_timeout_s)
    if jtop is not None:
        return jtop, SourceChoice("jtop", jtop_socket, "auto: the jtop service answers")
    tried.append(f"jtop: {why}")
    if exe is None:
        tried.append(f"tegrastats: none on PATH or at {TEGRASTATS_FALLBACK}")
    else:
        teg, why = _open_tegrastats(spec, mapping, interval_s, exe)
        if teg is not None:
            return teg, SourceChoice("tegrastats", " ".join(teg.command), "auto: no jtop service", tuple(tried))
        tried.append(f"tegrastats: {why}")
    return None, SourceChoice("sysfs", note="auto: no live source (" + "; ".join(tried) + ")", tried=tuple(tried))


# --- merging a live sweep into the sysfs sweep ---------------------------------------------------------------------

Category = Literal["domains", "power", "thermal", "load"]


def merge(sysfs: Observation, problems: Mapping[Category, Mapping[str, str]], live: Observation,
          source: str) -> Observation:
    """``sysfs`` (whose problems, by category, are ``problems``) overlaid with ``live`` (see the module doc).

    ``live.unavailable`` is expected to be prefixed with ``source`` already (both sources do)."""
    covered = {"power": bool(live.power_mw) or live.total_power_mw is not None,
               "thermal": bool(live.temps_c), "load": bool(live.util)}
    kept = [f"{name}: {why}" for cat, found in problems.items() if not covered.get(cat, False)
            for name, why in found.items()]
    total = live.total_power_mw if live.total_power_mw is not None else sysfs.total_power_mw
    return Observation(
        t=sysfs.t,
        domains=sysfs.domains,
        power_mw=frozen_map({**sysfs.power_mw, **live.power_mw}),
        total_power_mw=total,
        temps_c=frozen_map({**sysfs.temps_c, **live.temps_c}),
        util=frozen_map({**sysfs.util, **live.util}),
        simulated=sysfs.simulated,
        unavailable=(*live.unavailable, *kept) if live.unavailable or kept else (),
    )
