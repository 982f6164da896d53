"""Power monitors: every rail in mW, whatever unit the chip's driver speaks.

Theory of operation
-------------------
One sensor per catalogue ``[[power]]`` device, chosen by its ``driver``:

=================  ==============================================  =============================
driver             files (below the device dir, globbed)           conversion
=================  ==============================================  =============================
``ina3221-iio``    ``iio:device*/in_power{N}_input``, rail_name_N   mW as is (N = 0..2)
``ina3221-hwmon``  ``hwmon/hwmon*/in{N}_input``, curr, in{N}_label  mV x mA / 1000 (N = 1..3)
``ina231``         ``sensor_W`` (Hardkernel, ``"%d.%06d"`` W)       W x 1000; ``enable`` = 1 first
``ina2xx-hwmon``   ``hwmon/hwmon*/power1_input``                    µW / 1000
``rapl``           ``energy_uj`` counter (zone and sub-zones)       ΔµJ / Δt / 1000, wraps at
                                                                    ``max_energy_range_uj``
=================  ==============================================  =============================

``hwmonN``/``iio:deviceN`` numbers change between boots, so they are always globbed. Rails are
named as the catalogue names them (``power_total`` refers to those names); a channel the
catalogue or the kernel labels ``NC`` is unconnected and skipped, and the INA3221 sum channel
(7) is never read. Each sensor knows how often its chip refreshes (``update_interval_s``):
hwmon's ``update_interval`` (ms), the INA231's ``update_period`` (``"<n> usec"``), else the
catalogue figure; polling faster only re-reads old values.

A read returns the rails it could read and the reason for each it could not
(:class:`~governor.drivers._common.Partial`), so one vanished rail never hides the others.
Board power follows the catalogue ``power_total`` (:func:`total_power_mw`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from posixpath import basename

from governor.core.board import PowerDevice
from governor.drivers._common import Partial, failed, first_match, ok, parse_int, sweep
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Baseline, Probe

__all__ = [
    "INPUT_RAILS",
    "Ina2xxHwmon",
    "Ina231",
    "Ina3221Hwmon",
    "Ina3221Iio",
    "Rapl",
    "open_power_sensor",
    "total_power_mw",
]

INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")


def _unconnected(label: str) -> bool:
    return label.strip().upper() == "NC"


class _Sensor:
    """Shared shape: find the device dir, map channels to files at probe, read them each sweep."""

    def __init__(self, sysfs: SysfsRoot, spec: PowerDevice) -> None:
        self.sysfs = sysfs
        self.spec = spec
        self.dir = first_match(sysfs, [spec.path]) or ""
        self.name = f"{spec.driver}:{basename(self.dir or spec.path)}"
        self.update_interval_s = spec.update_interval_ms / 1000
        self._reads: dict[str, Callable[[], float]] = {}

    def probe(self) -> Probe:
        if not self.dir:
            return failed(f"no {self.spec.driver} device at {self.spec.path} (driver not loaded or wrong bus?)")
        try:
            self._reads = self._map_channels()
        except SysfsError as exc:
            return failed(f"{self.name}: {exc}")
        if not self._reads:
            return failed(f"{self.name}: no readable channel below {self.dir}")
        return ok(f"{self.name}: rails {', '.join(self._reads)} every {self.update_interval_s * 1000:g} ms")

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        raise NotImplementedError

    @property
    def rails(self) -> tuple[str, ...]:
        return tuple(self._reads)

    def read_partial(self) -> Partial:
        return sweep(self._reads)

    def read_mw(self) -> dict[str, float]:
        return dict(self.read_partial().values)

    def _below(self, pattern: str) -> str:
        found = first_match(self.sysfs, [f"{self.dir}/{pattern}"])
        if not found:
            raise SysfsError(f"nothing matches {self.dir}/{pattern}")
        return found

    def _connected(self, label_pattern: str, *, first: int) -> list[tuple[int, str]]:
        """(channel number, catalogue rail name) of channels that are wired: neither the catalogue
        nor the kernel's label file (``label_pattern`` with ``{}`` for the number) says NC."""
        wired = []
        for idx, rail in enumerate(self.spec.channels, start=first):
            label_rel = label_pattern.format(idx)
            label = self.sysfs.read(label_rel).strip() if self.sysfs.exists(label_rel) else rail.label
            if rail.connected and not _unconnected(label):
                wired.append((idx, rail.name))
        return wired

    def _number(self, rel: str, scale: float = 1.0) -> float:
        return self.sysfs.read_int(rel) * scale

    def _mv_times_ma(self, volts: str, amps: str) -> float:
        return self.sysfs.read_int(volts) * self.sysfs.read_int(amps) / 1000

    def _hwmon_interval(self, hwmon: str) -> None:
        rel = f"{hwmon}/update_interval"
        if self.sysfs.exists(rel):
            self.update_interval_s = self.sysfs.read_int(rel) / 1000


class Ina3221Iio(_Sensor):
    """NVIDIA's ``ina3221x`` IIO driver (L4T R32): ``in_power{N}_input`` in mW, N = 0..2."""

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        iio = self._below("iio[:_]device*")
        reads: dict[str, Callable[[], float]] = {}
        for idx, rail in self._connected(f"{iio}/rail_name_{{}}", first=0):
            reads[rail] = partial(self._number, f"{iio}/in_power{idx}_input")
        return reads


class Ina3221Hwmon(_Sensor):
    """The upstream ``ina3221`` hwmon driver (JetPack 5+): bus mV x current mA, no power file, N = 1..3."""

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        hwmon = self._below("hwmon/hwmon*")
        self._hwmon_interval(hwmon)
        reads: dict[str, Callable[[], float]] = {}
        for idx, rail in self._connected(f"{hwmon}/in{{}}_label", first=1):
            reads[rail] = partial(self._mv_times_ma, f"{hwmon}/in{idx}_input", f"{hwmon}/curr{idx}_input")
        return reads


class Ina231(_Sensor):
    """Hardkernel's INA231 driver (Odroid XU3): ``sensor_W`` in W as ``"%d.%06d"``; off until enabled.

    Probing writes ``enable`` = 1 (the chip's timer is off at boot) after saving the original text,
    which :meth:`snapshot` returns, so restoring the board's baseline switches it back off.
    """

    def __init__(self, sysfs: SysfsRoot, spec: PowerDevice) -> None:
        super().__init__(sysfs, spec)
        self.owner = f"ina231:{basename(self.dir or spec.path)}"
        self._enable_before: str | None = None

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        enable = f"{self.dir}/enable"
        if self._enable_before is None:
            self._enable_before = self.sysfs.read_bytes(enable).decode()
        self.sysfs.write(enable, 1)
        period = f"{self.dir}/update_period"
        if self.sysfs.exists(period):
            self.update_interval_s = parse_int(self.sysfs.read(period)) / 1e6
        watts = f"{self.dir}/sensor_W"
        return {self.spec.channels[0].name: lambda: float(self.sysfs.read(watts).strip()) * 1000}

    def snapshot(self) -> Baseline:
        if self._enable_before is None:
            return Baseline(self.owner)
        return Baseline(self.owner, ((f"{self.dir}/enable", self._enable_before),))

    def restore(self, baseline: Baseline) -> None:
        for rel, text in baseline.files:
            self.sysfs.write(rel, text.strip())


class Ina2xxHwmon(_Sensor):
    """The mainline ``ina2xx`` hwmon driver (INA231 on mainline XU3): ``power1_input`` in µW."""

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        hwmon = self._below("hwmon/hwmon*")
        self._hwmon_interval(hwmon)
        power = f"{hwmon}/power1_input"
        self.sysfs.read_int(power)
        return {self.spec.channels[0].name: partial(self._number, power, 1e-3)}


class Rapl(_Sensor):
    """Intel RAPL powercap zones: power from ``energy_uj`` deltas on the injected clock (s).

    Channel names are matched against the zone's and its sub-zones' ``name`` files
    (``package-0``, ``core``, ``uncore``, ``dram``), else taken in order. ``energy_uj`` is root-only
    on kernels patched for CVE-2020-8694; the probe then fails with the permission hint.
    """

    def __init__(self, sysfs: SysfsRoot, spec: PowerDevice, *, clock: Callable[[], float]) -> None:
        super().__init__(sysfs, spec)
        self.clock = clock
        self._last: dict[str, tuple[int, float, float]] = {}  # rail -> (energy µJ, t s, last mW)

    def _map_channels(self) -> dict[str, Callable[[], float]]:
        zones = [self.dir, *self.sysfs.glob(f"{self.dir}/{basename(self.dir)}:*")]
        named = {self.sysfs.read(f"{z}/name").strip(): z for z in zones if self.sysfs.exists(f"{z}/name")}
        reads: dict[str, Callable[[], float]] = {}
        for idx, rail in enumerate(self.spec.channels):
            zone = named.get(rail.name) or (zones[idx] if idx < len(zones) else "")
            if zone:
                self._last[rail.name] = (self.sysfs.read_int(f"{zone}/energy_uj"), self.clock(), 0.0)
                reads[rail.name] = partial(self._power, rail.name, zone)
        return reads

    def _power(self, rail: str, zone: str) -> float:
        energy, now = self.sysfs.read_int(f"{zone}/energy_uj"), self.clock()
        before, then, last_mw = self._last[rail]
        if now <= then:
            return last_mw
        delta = energy - before
        if delta < 0:
            delta += self.sysfs.read_int(f"{zone}/max_energy_range_uj")
        mw = delta / (now - then) / 1000
        self._last[rail] = (energy, now, mw)
        return mw


_SENSORS: Mapping[str, type[_Sensor]] = {
    "ina3221-iio": Ina3221Iio,
    "ina3221-hwmon": Ina3221Hwmon,
    "ina231": Ina231,
    "ina2xx-hwmon": Ina2xxHwmon,
}


def open_power_sensor(sysfs: SysfsRoot, spec: PowerDevice, *, clock: Callable[[], float]) -> _Sensor:
    """The sensor for one catalogue power device (not probed yet)."""
    if spec.driver == "rapl":
        return Rapl(sysfs, spec, clock=clock)
    return _SENSORS[spec.driver](sysfs, spec)


def total_power_mw(rails: Mapping[str, float], power_total: Sequence[str] = ()) -> float | None:
    """Board power in mW without double counting, or None when a rail it needs is missing.

    The catalogue's ``power_total`` names either one input rail or rails that add up; without it,
    a known input rail (``VDD_IN``, ``POM_5V_IN``, ``VIN``) is the total, else the sum of all rails.
    """
    if power_total:
        if any(name not in rails for name in power_total):
            return None
        return sum(rails[name] for name in power_total)
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name]
    return sum(rails.values()) if rails else None
