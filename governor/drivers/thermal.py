"""Thermal zones: ``thermal_zoneN/{type,temp}``, m°C in sysfs, °C out, keyed by ``type``.

Theory of operation
-------------------
Zone numbers are not stable across kernels, so zones are found by globbing and named by their
``type`` (``GPU-therm``, ``cpu-thermal``...). The class directory and the virtual devices
directory are the same zones through symlinks; both are globbed and deduplicated by real path,
because either may be missing in a container. Jetson reports a powered-off zone (CV/DLA, at
times the GPU) as -256 °C up to JetPack 5; JetPack 6 (L4T R36) fails the read with EAGAIN instead.
Both are left out of the readings without an error (it would come every tick) and listed in
:attr:`ThermalZones.offline`; a zone that fails any other way is an error. A duplicate type (several
``acpitz`` on a PC) gets the zone directory appended (``acpitz@thermal_zone1``).
"""

from __future__ import annotations

import errno
from functools import partial
from posixpath import basename

from governor.drivers._common import Partial, failed, ok, sweep
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Probe

__all__ = ["DISABLED_C", "OFFLINE_ERRNOS", "ZONE_GLOBS", "ThermalZones"]

ZONE_GLOBS = ("sys/class/thermal/thermal_zone*", "sys/devices/virtual/thermal/thermal_zone*")
DISABLED_C = -256.0
OFFLINE_ERRNOS = (errno.EAGAIN,)  # a powered-off zone on JetPack 6 (L4T R36): "Resource temporarily unavailable"


class ThermalZones:
    """Every thermal zone of the machine, read in one sweep."""

    name = "thermal"

    def __init__(self, sysfs: SysfsRoot) -> None:
        self.sysfs = sysfs
        self._zones: dict[str, str] = {}  # type -> zone dir
        self.offline: tuple[str, ...] = ()  # zones powered off at the last read (-256 °C or EAGAIN)

    def probe(self) -> Probe:
        self._zones = self._find()
        if not self._zones:
            return failed(f"no thermal zone at {' or '.join(ZONE_GLOBS)}")
        self.read_partial()
        off = f"; powered off now (not read until they power up): {', '.join(self.offline)}" if self.offline else ""
        return ok(f"zones {', '.join(self._zones)}{off}")

    def _find(self) -> dict[str, str]:
        zones: dict[str, str] = {}
        seen: set[str] = set()
        for pattern in ZONE_GLOBS:
            for zone in self.sysfs.glob(pattern):
                real = self.sysfs.realpath(zone)
                if real in seen:
                    continue
                seen.add(real)
                try:
                    kind = self.sysfs.read(f"{zone}/type").strip()
                except SysfsError:
                    continue
                zones[f"{kind}@{basename(zone)}" if kind in zones else kind] = zone
        return zones

    @property
    def zones(self) -> tuple[str, ...]:
        return tuple(self._zones)

    def read_partial(self) -> Partial:
        part = sweep({kind: partial(self._celsius, zone) for kind, zone in self._zones.items()})
        self.offline = tuple(k for k, c in part.values.items() if c <= DISABLED_C)
        return Partial({k: c for k, c in part.values.items() if c > DISABLED_C}, part.errors)

    def _celsius(self, zone: str) -> float:
        try:
            return self.sysfs.read_int(f"{zone}/temp") / 1000
        except SysfsError as exc:
            if exc.errno in OFFLINE_ERRNOS:
                return DISABLED_C  # powered off, as -256 °C says on older releases
            raise

    def read_c(self) -> dict[str, float]:
        """°C by zone type, disabled zones left out."""
        return dict(self.read_partial().values)
