"""The simulator's two clocks: virtual time (as fast as the CPU allows) and real time (the daemon demo).

Both are callables returning seconds, the shape the drivers take as ``clock=``. Only the simulator
moves a :class:`VirtualClock`; a :class:`RealClock` moves by itself and the simulator catches up to
it (on each read, or from a background thread).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RealClock", "SimClock", "VirtualClock"]


class VirtualClock:
    """Seconds that pass only when :meth:`advance` says so. ``virtual`` is True."""

    virtual = True

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = float(start_s)

    def __call__(self) -> float:
        return self._now

    def advance(self, dt_s: float) -> float:
        if dt_s < 0:
            raise ValueError(f"virtual time cannot go backwards (asked to advance {dt_s} s)")
        self._now += dt_s
        return self._now

    def __repr__(self) -> str:
        return f"VirtualClock(t={self._now:.6f})"


class RealClock:
    """Monotonic seconds since construction (``source`` injectable for tests). ``virtual`` is False."""

    virtual = False

    def __init__(self, source: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._origin = source()

    def __call__(self) -> float:
        return self._source() - self._origin

    def __repr__(self) -> str:
        return f"RealClock(t={self():.3f})"


SimClock = VirtualClock | RealClock
