"""Progress of a profiling run: a bar, points measured against the budget, and an ETA.

One helper for `governor profile` and the daemon's first-start profiling, so both say the same thing
the same way. The ETA is an upper bound: the sampler may stop before its budget once every model is
accurate enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Progress"]

_BAR = 30  # characters


@dataclass
class Progress:
    """``total`` is the most points that will be measured; ``resumed`` of them were measured before this
    run (a checkpoint) and are not timed. Times are wall-clock seconds from ``clock``."""

    total: int
    resumed: int = 0
    every_s: float = 0.0  # ``due`` says yes at most this often (0: every time)
    clock: Callable[[], float] = time.monotonic
    started: float = field(init=False)
    _last: float | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def eta_s(self, done: int) -> float:
        """Seconds left at the pace so far if all ``total`` points are measured (an upper bound)."""
        rate = (self.clock() - self.started) / max(done - self.resumed, 1)
        return max(self.total - done, 0) * rate

    def line(self, done: int, candidates: int) -> str:
        """``[####     ] 12/96 points (of 1230), ETA <= 230 s``; a budget above the candidates is capped
        to them (a host's 8 points were shown as "4/48 points (of 8)")."""
        if candidates < self.total:
            self.total = candidates
        bar = "#" * int(_BAR * min(done, self.total) / max(self.total, 1))
        return f"[{bar:<{_BAR}}] {done}/{self.total} points (of {candidates}), ETA <= {self.eta_s(done):.0f} s"

    def due(self) -> bool:
        """True the first time and then once ``every_s`` has passed since the last time it was true."""
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True
