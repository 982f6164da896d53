"""Background load: co-runners that take a share of a compute unit (and DRAM bandwidth) over time.

Theory of operation
-------------------
A co-runner on a unit takes ``share`` of every online core of it (or of the GPU) by time-sharing,
so a simulated inference there progresses at ``1 - share`` of its own speed (``share`` is of the
unit at its top clock; a slower clock stretches the co-runner's busy time, see :class:`CoRunner`). It also loads the
unit (power rises), stalls on memory by its ``stall_ratio`` r (stall = r f / (r f + f_emc), the
same form the TX2 fit uses for its benchmarks) and moves ``traffic_bytes_per_s`` through DRAM.
A :class:`Scenario` is a list of phases, each a time window with its co-runners; it can repeat
with a period (the live demo), and :meth:`Scenario.random` draws one from a seed.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["CoRunner", "Phase", "Scenario"]


@dataclass(frozen=True)
class CoRunner:
    """Another program on ``unit`` (a compute unit name) taking ``share`` (0..1) of it.

    With ``fixed_work`` (the default) the share is what it needs at the unit's top clock, so at
    a lower clock it needs more time: min(1, share x f_top / f); a load-following governor then
    settles where real background work would put it. Without, ``share`` is a fixed duty cycle
    whatever the clock (a measured busy fraction, as the calibration replay uses).
    """

    unit: str
    share: float
    stall_ratio: float = 0.1
    traffic_bytes_per_s: float = 0.0
    fixed_work: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"co-runner share must be within 0..1, got {self.share} for unit {self.unit!r}")
        if self.stall_ratio < 0 or self.traffic_bytes_per_s < 0:
            raise ValueError("co-runner stall_ratio and traffic must not be negative")


@dataclass(frozen=True)
class Phase:
    """Co-runners active from ``start_s`` (inclusive) to ``end_s`` (exclusive), scenario time."""

    start_s: float
    end_s: float
    corunners: tuple[CoRunner, ...] = ()

    def __post_init__(self) -> None:
        if self.end_s <= self.start_s:
            raise ValueError(f"a phase must end after it starts ({self.start_s} .. {self.end_s} s)")


@dataclass(frozen=True)
class Scenario:
    """Phases over time; ``period_s`` > 0 repeats them (phases must then fit inside one period)."""

    phases: tuple[Phase, ...] = ()
    period_s: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.phases, key=lambda p: p.start_s))
        if any(b.start_s < a.end_s for a, b in itertools.pairwise(ordered)):
            raise ValueError("scenario phases overlap; give each time window one phase")
        if self.period_s and ordered and ordered[-1].end_s > self.period_s:
            raise ValueError(f"phases end at {ordered[-1].end_s} s, after the period {self.period_s} s")
        object.__setattr__(self, "phases", ordered)

    def _local(self, t: float) -> tuple[float, float]:
        """(time inside the period, start of this period)."""
        if self.period_s <= 0:
            return t, 0.0
        base = (t // self.period_s) * self.period_s
        return t - base, base

    def active(self, t: float) -> tuple[CoRunner, ...]:
        """Co-runners running at scenario time ``t`` (s)."""
        local, _ = self._local(t)
        for phase in self.phases:
            if phase.start_s <= local < phase.end_s:
                return phase.corunners
        return ()

    def next_change(self, t: float) -> float:
        """The first time after ``t`` at which the active set may change (inf if never)."""
        local, base = self._local(t)
        edges = sorted({e for p in self.phases for e in (p.start_s, p.end_s) if e > local})
        if edges:
            return base + edges[0]
        if self.period_s > 0 and self.phases:
            return base + self.period_s + self.phases[0].start_s
        return float("inf")

    @classmethod
    def idle(cls) -> Scenario:
        return cls(name="idle")

    @classmethod
    def constant(cls, corunners: Iterable[CoRunner], name: str = "constant") -> Scenario:
        return cls((Phase(0.0, float("inf"), tuple(corunners)),), name=name)

    @classmethod
    def random(
        cls, units: Sequence[str], *, seed: int, duration_s: float, mean_phase_s: float = 2.0, max_share: float = 0.8
    ) -> Scenario:
        """Seeded phases of random length, each with a random subset of ``units`` at random shares."""
        rng = random.Random(seed)
        phases: list[Phase] = []
        t = 0.0
        while t < duration_s:
            length = rng.expovariate(1.0 / mean_phase_s)
            picked = [u for u in units if rng.random() < 0.5]
            runners = tuple(
                CoRunner(u, round(rng.uniform(0.1, max_share), 3), stall_ratio=round(rng.uniform(0.02, 1.0), 3))
                for u in picked
            )
            phases.append(Phase(t, min(t + length, duration_s), runners))
            t += length
        return cls(tuple(phases), name=f"random(seed={seed})")

    @classmethod
    def demo(cls, units: Sequence[str], step_s: float = 4.0) -> Scenario:
        """A repeating cycle for the live demo: each unit busy in turn, then all of them, then quiet."""
        steps: list[tuple[CoRunner, ...]] = [(CoRunner(u, 0.6, stall_ratio=0.2),) for u in units]
        steps += [tuple(CoRunner(u, 0.9, stall_ratio=0.2) for u in units), ()]
        phases = tuple(Phase(i * step_s, (i + 1) * step_s, runners) for i, runners in enumerate(steps))
        return cls(phases, period_s=len(steps) * step_s, name="demo")
