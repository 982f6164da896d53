"""What the kernel does with the limits software wrote: governors, snapping, thermal capping.

Theory of operation
-------------------
Every domain gets a :class:`DomainControl` read from its files (limits, governor, setspeed, or
an exact lock for the EMC). :func:`governed_hz` turns it into the frequency the kernel would run:
``performance``/``powersave`` take the top/bottom of the limits, ``userspace`` takes the setspeed,
a lock takes its rate, and every load-following governor (schedutil, ondemand, nvhost_podgov,
the Mali DVFS, the BPMP's EMC scaling) asks for ``margin x load x current clock`` (schedutil's
rule: 1.25 x frequency-invariant utilisation) and gets the lowest OPP at or above it. Results
always land on a table entry inside ``[min, max]``; if min > max, max wins (newer kernels).

:class:`Throttle` is the passive (step-wise) cooling device: each poll, a domain whose zone is
above its passive trip loses one OPP from its cap, and gets one back when every zone cooling it
is below trip - hysteresis; at the critical trip it drops to the bottom at once (a real board
would shut down; the simulator keeps running and says so in the zone temperature).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["AUTO", "DomainControl", "Throttle", "governed_hz", "snap_within"]

AUTO = "auto"  # the firmware scales the clock itself (unlocked EMC, Mali DVFS on)
_MARGIN = {"schedutil": 1.25, "ondemand": 1.25, "interactive": 1.25, "conservative": 1.1, AUTO: 2.0}
_DEFAULT_MARGIN = 1.25


@dataclass(frozen=True)
class DomainControl:
    """What one domain's files ask for, in Hz (``pinned_hz`` = an exact lock, e.g. EMC override)."""

    governor: str = ""
    min_hz: float = 0.0
    max_hz: float = math.inf
    setspeed_hz: float | None = None
    pinned_hz: float | None = None


def snap_within(table: Sequence[float], target: float, lo: float, hi: float) -> float:
    """The lowest table entry >= ``target`` inside [lo, hi]; the nearest end if none qualifies."""
    if lo > hi:
        lo = hi
    inside = [f for f in table if lo <= f <= hi] or [min(table, key=lambda f: abs(f - hi))]
    i = bisect.bisect_left(inside, target - 1e-6)
    return inside[min(i, len(inside) - 1)]


def governed_hz(table: Sequence[float], control: DomainControl, load: float, cur_hz: float) -> float:
    """The clock the kernel runs for ``control`` at ``load`` (busy fraction at ``cur_hz``), Hz."""
    lo, hi = control.min_hz, control.max_hz
    if control.pinned_hz is not None:
        return snap_within(table, control.pinned_hz, lo, hi)
    governor = control.governor
    if governor == "performance":
        return snap_within(table, math.inf, lo, hi)
    if governor == "powersave":
        return snap_within(table, 0.0, lo, hi)
    wanted = control.setspeed_hz
    if governor == "userspace" and wanted:
        return snap_within(table, min(table, key=lambda f: abs(f - wanted)), lo, hi)
    margin = _MARGIN.get(governor, _DEFAULT_MARGIN)
    return snap_within(table, margin * max(load, 0.0) * max(cur_hz, table[0]), lo, hi)


class Throttle:
    """Step-wise passive cooling: per domain, how many OPPs are cut from the top of its table."""

    def __init__(self, tables: Mapping[str, Sequence[float]], hysteresis_c: float) -> None:
        self.tables = {d: tuple(t) for d, t in tables.items()}
        self.hysteresis_c = hysteresis_c
        self.state = dict.fromkeys(self.tables, 0)

    def cap_hz(self, domain: str) -> float:
        table = self.tables.get(domain)
        if not table:
            return math.inf
        return table[len(table) - 1 - self.state[domain]]

    def poll(self, zones: Sequence[tuple[float, float | None, float | None, Sequence[str]]]) -> None:
        """One poll over (temperature, passive trip, critical trip, domains cooled) per zone, °C."""
        hot: set[str] = set()
        warm: set[str] = set()
        critical: set[str] = set()
        for temp, trip, crit, domains in zones:
            if crit is not None and temp >= crit:
                critical.update(domains)
            if trip is None:
                continue
            if temp > trip:
                hot.update(domains)
            elif temp >= trip - self.hysteresis_c:
                warm.update(domains)
        for domain in self.state:
            top = len(self.tables[domain]) - 1
            if domain in critical:
                self.state[domain] = top
            elif domain in hot:
                self.state[domain] = min(top, self.state[domain] + 1)
            elif domain not in warm:
                self.state[domain] = max(0, self.state[domain] - 1)

    @property
    def throttled(self) -> dict[str, int]:
        return {d: s for d, s in self.state.items() if s}
