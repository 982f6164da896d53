"""Heat in a simulated board: one package RC node, a local node per thermal zone, a fan, trip points.

Theory of operation
-------------------
The package node is heated by the whole board's power (the input rail, else every rail: a
module's heat leaves through its heatsink, regulator losses included) through the heatsink's
°C/W; a fan, where the board has one, switches it to a lower °C/W above ``fan_on_c``
(off again 5 °C lower). Each zone adds a fast local node heated by the power of the unit it
``measures`` (a CPU cluster, the GPU, ``soc`` = the memory controller). ``board`` zones sit
part-way between ambient and the package, ``pmic`` zones read a constant. Each cooling poll hands
the zone temperatures and trip points to :class:`~governor.sim.dvfs.Throttle`; a zone on a unit
cools that unit's domain, any other zone with a trip cools every CPU and GPU domain.
"""

from __future__ import annotations

from collections.abc import Mapping

from governor.core.board import BoardSpec
from governor.core.physics import rc_step
from governor.sim.boards import BoardPhysics
from governor.sim.dvfs import Throttle

__all__ = ["Heat"]


class Heat:
    """Temperatures of one board (°C) and the stepping that moves them."""

    def __init__(self, spec: BoardSpec, physics: BoardPhysics) -> None:
        self.params = physics.thermal
        self.zones = [z for z in spec.thermal if not z.disabled]
        self.pkg_c = self.params.ambient_c
        self.local_c = {z.type: 0.0 for z in self.zones}
        self.fan_on = False
        self._unit_domain = {u.name: u.domain for u in spec.units if u.domain}
        self._emc = physics.emc_domain

    def _domains(self, measures: str) -> list[str]:
        if measures in self._unit_domain:
            return [self._unit_domain[measures]]
        if measures == "soc" and self._emc:
            return [self._emc]
        return []

    def step(self, board_mw: float, by_domain: Mapping[str, float], dt_s: float) -> None:
        """Advance every node by ``dt_s`` s with the board drawing ``board_mw`` (per domain: ``by_domain``)."""
        p = self.params
        self.fan_on = p.fan is not None and self.pkg_c >= p.fan_on_c - (5.0 if self.fan_on else 0.0)
        node = p.fan if p.fan is not None and self.fan_on else p.package
        self.pkg_c = rc_step(self.pkg_c, p.ambient_c, board_mw / 1000, node, dt_s)
        for zone in self.zones:
            local_w = sum(by_domain.get(d, 0.0) for d in self._domains(zone.measures)) / 1000
            self.local_c[zone.type] = rc_step(self.local_c[zone.type], 0.0, local_w, p.local, dt_s)

    def zone_temp(self, zone_type: str) -> float:
        """One zone's temperature now, °C."""
        zone = next((z for z in self.zones if z.type == zone_type), None)
        if zone is None:
            raise KeyError(f"no enabled thermal zone {zone_type!r}; zones: {[z.type for z in self.zones]}")
        p = self.params
        if zone.measures == "pmic":
            return p.pmic_c
        if zone.measures == "board":
            return p.ambient_c + p.board_fraction * (self.pkg_c - p.ambient_c)
        return self.pkg_c + self.local_c[zone.type]

    def temps(self) -> dict[str, float]:
        return {z.type: self.zone_temp(z.type) for z in self.zones}

    def poll(self, throttle: Throttle) -> None:
        """One passive-cooling poll: zones over their trips cut OPPs from the domains they cool."""
        everything = list(throttle.tables)
        cooled = {u: [d] for u, d in self._unit_domain.items() if d in throttle.tables}
        throttle.poll([(self.zone_temp(z.type), z.passive_trip_c, z.critical_trip_c, cooled.get(z.measures, everything))
                       for z in self.zones])
