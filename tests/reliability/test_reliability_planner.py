"""The scheduler must not mistake its own pin for a cap (found by the thermal-trip fault test).

Pinning by limits writes min = max = the chosen clock, so the next observation reads max = that
clock. Counting it as a cap locked every later decision at or below the first clock chosen: after
one low-energy request, a min-latency request could never raise the clock again.
"""

from __future__ import annotations

import numpy as np

from governor.core.decision.optimiser import DecisionTable, Demand, Objective, Optimiser
from governor.core.decision.planner import Planner
from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints

LOW, HIGH = 500_000_000, 1_500_000_000


def two_clock_planner() -> Planner:
    points = tuple(OperatingPoint("cpu", 1, Setpoints({"cpu": f}), 1) for f in (LOW, HIGH))
    table = DecisionTable(points, np.array([30.0, 10.0]), np.array([1.0, 3.0]), np.array([0.9, 0.9]))
    return Planner(Optimiser(table, hysteresis=0.0), {"cpu": "cpu"}, {"cpu": 1}, {"cpu": HIGH})


def observe_pinned(s: Planner, hz: int, *, cap: int | None = None) -> None:
    held = min(hz, cap) if cap else hz
    s.observe(Observation(t=1.0, domains={"cpu": DomainReading(held, held, held)}))


def test_reliability_own_low_pin_does_not_cap_later_choices():
    s = two_clock_planner()
    low = s.decide(Demand(objective=Objective.MIN_ENERGY))
    assert low.point.setpoints.hz["cpu"] == LOW
    s.applied(low.index, {"cpu": LOW})
    observe_pinned(s, LOW)
    assert s.caps_hz == {}
    assert s.decide(Demand(objective=Objective.MIN_LATENCY)).point.setpoints.hz["cpu"] == HIGH


def test_reliability_a_cap_below_the_pin_still_counts():
    s = two_clock_planner()
    high = s.decide(Demand(objective=Objective.MIN_LATENCY))
    s.applied(high.index, {"cpu": HIGH})
    observe_pinned(s, HIGH, cap=LOW)  # thermal or nvpmodel pulled max (and the clock) below our pin
    assert s.caps_hz == {"cpu": LOW}
    assert s.decide(Demand(objective=Objective.MIN_LATENCY)).point.setpoints.hz["cpu"] == LOW


def test_reliability_a_cap_the_kernel_keeps_is_seen_again_from_the_readback():
    s = two_clock_planner()
    low = s.decide(Demand(objective=Objective.MIN_ENERGY))
    s.applied(low.index, {"cpu": LOW})
    observe_pinned(s, LOW)
    high = s.decide(Demand(objective=Objective.MIN_LATENCY))
    s.applied(high.index, {"cpu": LOW})  # asked HIGH, the kernel held LOW (a cap we could not see before)
    observe_pinned(s, LOW)
    assert s.caps_hz == {"cpu": LOW}
