"""jetson-stats (``jtop``) as a read-only sensor backend, used when the jtop service answers.

Theory of operation
-------------------
jetson-stats runs a root service (``jtop.service``) that reads sysfs and serves clients over the
UNIX socket ``/run/jtop.sock``; a client object's ``.power``, ``.temperature``, ``.gpu``, ``.cpu`` and
``.memory`` dicts are refreshed by a reader thread (boards.md §6). A lost service is not raised by
those dicts (they just go stale) but by ``ok()``, so every sweep asks ``ok(spin=True)`` first, then
copies the five dicts, then interprets the copies with tolerant lookups (shapes of jetson-stats 4.x
and 7.x). Any failure of the first two steps marks the backend unavailable, with a message that says
to restart the service; it never takes the daemon down.

jtop cannot set arbitrary CPU/GPU/EMC clocks, so this backend only reads. jetson-stats is the
optional ``jetson`` extra and is imported lazily, only when a client is made. Units: mW, °C, Hz,
busy fractions 0..1 (jtop reports kHz and %; converted here).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from typing import Any

from governor.core.types import Observation, frozen_map
from governor.drivers.base import Probe, ProbeResult
from governor.drivers.tegrastats import SensorMapping, cluster_freqs_hz, cluster_util, total_power_mw

__all__ = [
    "JTOP_SOCKET", "JtopSensors", "JtopUnavailable", "freqs_hz", "jtop_available", "rails_mw", "temps_c",
    "util_fractions",
]

JTOP_SOCKET = "/run/jtop.sock"
RESTART_HINT = "sudo systemctl restart jtop"
INSTALL_HINT = "install jetson-stats with: pip install 'dnn-governor[jetson]' (import name jtop)"
_SECTIONS = ("power", "temperature", "gpu", "cpu", "memory")
KHZ = 1_000


class JtopUnavailable(RuntimeError):
    """The jtop service or client cannot be used; ``str()`` says what to do."""


def jtop_available(timeout_s: float = 1.0, socket_path: str = JTOP_SOCKET) -> bool:
    """True if a service listens on ``socket_path`` and speaks first within ``timeout_s`` seconds.

    The jtop service (a multiprocessing manager) opens every connection with an authentication
    challenge, so one received byte shows it is alive, not just a stale socket file. Whether the
    ``jtop`` package is installed is a separate question (:meth:`JtopSensors.probe`).
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(socket_path)
            return bool(sock.recv(1))
        except OSError:  # missing, refused, permission (not in group jtop), or silent until timeout
            return False


def _make_client(interval_s: float) -> Any:
    from jtop import jtop  # the optional `jetson` extra: imported only when a client is wanted

    return jtop(interval=interval_s)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def rails_mw(power: Mapping[str, Any]) -> dict[str, float]:
    """Rail name -> mW from ``.power``; jtop moves the input rail (VDD_IN/POM_5V_IN) into ``tot``."""
    rails = {
        name: mw
        for name, rail in (power.get("rail") or {}).items()
        if rail.get("online", True) and (mw := _number(rail.get("power"))) is not None
    }
    total = power.get("tot") or {}
    if "name" in total and (mw := _number(total.get("power"))) is not None:
        rails[str(total["name"])] = mw  # a named total is a real rail; an unnamed one is jtop's own sum
    return rails


def temps_c(temperature: Mapping[str, Any], mapping: SensorMapping) -> dict[str, float]:
    """Zone -> °C, without offline zones (online False or -256) and ``mapping.ignore_temps``; jtop's
    names (``cpu``, ``CPU``) become the catalogue's zone types (``cpu-thermal``, ``CPU-therm``)."""
    readings = {name: (zone.get("online", True), _number(zone.get("temp"))) for name, zone in temperature.items()}
    return {mapping.zone_name(n): v for n, (online, v) in readings.items()
            if online and v is not None and mapping.keeps_temp(n, v)}


def _first_gpu(gpu: Mapping[str, Any]) -> Mapping[str, Any]:
    return next(iter(gpu.values()), {}) if gpu else {}


def util_fractions(cpu: Mapping[str, Any], gpu: Mapping[str, Any], memory: Mapping[str, Any],
                   mapping: SensorMapping) -> tuple[dict[str, float], list[str]]:
    """Busy fraction per CPU cluster (100 - idle %), GPU and ``"emc"``; plus what could not be read."""
    cores = cpu.get("cpu") or []
    busy = [(100.0 - idle) / 100 if c.get("online", True) and (idle := _number(c.get("idle"))) is not None
            else None for c in cores]
    util, problems = cluster_util(busy, mapping)
    load = _number((_first_gpu(gpu).get("status") or {}).get("load"))
    if load is not None:
        util[mapping.gpu_unit] = load / 100
    elif gpu:
        problems.append(f"util {mapping.gpu_unit}: jtop reports no GPU load here (Thor: jetson-stats #885)")
    emc = _number((memory.get("EMC") or {}).get("val"))
    if emc is not None:
        util["emc"] = emc / 100
    return util, problems


def freqs_hz(cpu: Mapping[str, Any], gpu: Mapping[str, Any], memory: Mapping[str, Any],
             mapping: SensorMapping) -> dict[str, int]:
    """Current clocks in Hz by CPU cluster, GPU unit and ``"emc"`` (jtop reports kHz)."""
    core_khz = [(_number((c.get("freq") or {}).get("cur")) if c.get("online", True) else None)
                for c in cpu.get("cpu") or []]
    out = cluster_freqs_hz([int(k * KHZ) if k else None for k in core_khz], mapping)
    for name, khz in ((mapping.gpu_unit, (_first_gpu(gpu).get("freq") or {}).get("cur")),
                      ("emc", (memory.get("EMC") or {}).get("cur"))):
        if (value := _number(khz)) is not None:
            out[name] = int(value * KHZ)
    return out


class JtopSensors:
    """Power, thermal and load readings from the jtop service (PowerSensor/ThermalSensor/LoadSensor).

    Read-only on purpose: jetson-stats has no API for arbitrary CPU/GPU/EMC frequencies or CPU
    online masks, so there is no setter here. Use the sysfs drivers (cpufreq, devfreq, EMC) to set
    clocks; they coexist with jtop. Call :meth:`start` before reading; after the service goes away
    every read raises :class:`JtopUnavailable` and :meth:`observe` reports it in ``unavailable``
    until :meth:`start` succeeds again.
    """

    name = "jtop"

    def __init__(self, mapping: SensorMapping | None = None, *, interval_s: float = 1.0,
                 client_factory: Callable[[float], Any] = _make_client, socket_path: str = JTOP_SOCKET,
                 probe_timeout_s: float = 1.0) -> None:
        self.mapping = mapping or SensorMapping()
        self.update_interval_s = interval_s  # the service's own loop; < 0.5 s is unstable (jetson-stats #414)
        self._factory, self._socket, self._probe_timeout = client_factory, socket_path, probe_timeout_s
        self._client: Any = None
        self.problem = "jtop is not started: call start() first"

    @property
    def available(self) -> bool:
        return self._client is not None

    def probe(self) -> Probe:
        """FAIL without jetson-stats, DEFER while the service does not answer, else SUCCESS."""
        try:
            import jtop  # noqa: F401  (only asks whether the extra is installed)
        except ImportError:
            return Probe(ProbeResult.FAIL, INSTALL_HINT)
        if not jtop_available(self._probe_timeout, self._socket):
            return Probe(ProbeResult.DEFER, f"the jtop service does not answer on {self._socket}: {RESTART_HINT} "
                         "(and add this user to group jtop)")
        return Probe(ProbeResult.SUCCESS, f"jtop service on {self._socket}")

    def start(self) -> Probe:
        """Connect a client; on failure the Probe (and :attr:`problem`) says what to do."""
        self.close()
        try:
            client = self._factory(self.update_interval_s)
        except ImportError:
            self.problem = INSTALL_HINT
            return Probe(ProbeResult.FAIL, self.problem)
        try:
            client.start()
        except Exception as exc:  # jtop raises its own JtopException, or socket errors
            self.problem = f"cannot connect to the jtop service ({exc}): {RESTART_HINT}"
            return Probe(ProbeResult.DEFER, self.problem)
        self._client = client
        return Probe(ProbeResult.SUCCESS, "connected to jtop")

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a client whose service died may fail to close
                client.close()

    def __enter__(self) -> JtopSensors:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fetch(self) -> dict[str, Mapping[str, Any]]:
        """Copies of the five jtop dicts, or JtopUnavailable (and the backend marked lost)."""
        if self._client is None:
            raise JtopUnavailable(self.problem)
        try:
            if self._client.ok(spin=True) is False:
                raise RuntimeError("the jtop client stopped")
            return {s: dict(getattr(self._client, s) or {}) for s in _SECTIONS}
        except Exception as exc:
            self.close()
            self.problem = f"lost the jtop service ({type(exc).__name__}: {exc}): {RESTART_HINT}"
            raise JtopUnavailable(self.problem) from exc

    def read_mw(self) -> dict[str, float]:
        """Rail name -> mW (the input rail included, under its own name)."""
        return rails_mw(self._fetch()["power"])

    def total_mw(self) -> float | None:
        """Board power in mW by the mapping's total rule; None if those rails are absent."""
        return total_power_mw(self.read_mw(), self.mapping)

    def read_c(self) -> dict[str, float]:
        return temps_c(self._fetch()["temperature"], self.mapping)

    def read_util(self) -> dict[str, float]:
        d = self._fetch()
        return util_fractions(d["cpu"], d["gpu"], d["memory"], self.mapping)[0]

    def read_freqs_hz(self) -> dict[str, int]:
        d = self._fetch()
        return freqs_hz(d["cpu"], d["gpu"], d["memory"], self.mapping)

    def observe(self, t: float) -> Observation:
        """One sweep at time ``t`` (s). Never raises for a lost service: it lands in ``unavailable``."""
        try:
            d = self._fetch()
        except JtopUnavailable as exc:
            return Observation(t, unavailable=(f"jtop: {exc}",))
        rails = rails_mw(d["power"])
        util, problems = util_fractions(d["cpu"], d["gpu"], d["memory"], self.mapping)
        total = total_power_mw(rails, self.mapping, problems)
        return Observation(t, power_mw=frozen_map(rails), total_power_mw=total,
                           temps_c=frozen_map(temps_c(d["temperature"], self.mapping)), util=frozen_map(util),
                           unavailable=tuple(f"jtop: {p}" for p in problems))
