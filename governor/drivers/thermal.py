"""Thermal zones: ``thermal_zoneN/{type,temp}``, m°C in sysfs, °C out, keyed by ``type``.

Theory of operation
-------------------
Zone numbers are not stable across kernels, so zones are found by globbing and named by their
``type`` (``GPU-therm``, ``cpu-thermal``...). The class directory and the virtual devices
directory are the same zones through symlinks; both are globbed and deduplicated by real path,
because either may be missing in a container. Jetson reports a powered-off zone (CV/DLA) as
-256 °C; such readings are left out, as the interface promises. A duplicate type (several
``acpitz`` on a PC) gets the zone directory appended (``acpitz@thermal_zone1``).
"""

from __future__ import annotations

from functools import partial
from posixpath import basename

from governor.drivers._common import Partial, failed, ok, sweep
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Probe

__all__ = ["DISABLED_C", "ZONE_GLOBS", "ThermalZones"]

ZONE_GLOBS = ("sys/class/thermal/thermal_zone*", "sys/devices/virtual/thermal/thermal_zone*")
DISABLED_C = -256.0


class ThermalZones:
    """Every thermal zone of the machine, read in one sweep."""

    name = "thermal"

    def __init__(self, sysfs: SysfsRoot) -> None:
        self.sysfs = sysfs
        self._zones: dict[str, str] = {}  # type -> zone dir

    def probe(self) -> Probe:
        self._zones = self._find()
        if not self._zones:
            return failed(f"no thermal zone at {' or '.join(ZONE_GLOBS)}")
        return ok(f"zones {', '.join(self._zones)}")

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
        return Partial({k: c for k, c in part.values.items() if c > DISABLED_C}, part.errors)

    def _celsius(self, zone: str) -> float:
        return self.sysfs.read_int(f"{zone}/temp") / 1000

    def read_c(self) -> dict[str, float]:
        """°C by zone type, disabled zones left out."""
        return dict(self.read_partial().values)
