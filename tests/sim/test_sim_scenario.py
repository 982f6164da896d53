"""Background-load scenarios: phases, periodic repetition, seeded random draws."""

import math

import pytest

from governor.sim.scenario import CoRunner, Phase, Scenario


def test_phases_are_active_in_their_window_and_changes_are_announced():
    cpu = CoRunner("a57", 0.5)
    sc = Scenario((Phase(2.0, 5.0, (cpu,)),))
    assert sc.active(1.0) == () and sc.active(2.0) == (cpu,) and sc.active(5.0) == ()
    assert sc.next_change(0.0) == 2.0 and sc.next_change(3.0) == 5.0 and sc.next_change(6.0) == math.inf


def test_periodic_scenarios_repeat():
    sc = Scenario.demo(["a57", "gpu"], step_s=1.0)
    assert sc.period_s == 4.0
    assert sc.active(0.5) == sc.active(4.5) and sc.active(0.5)[0].unit == "a57"
    assert sc.active(1.5)[0].unit == "gpu" and len(sc.active(2.5)) == 2 and sc.active(3.5) == ()
    assert sc.next_change(3.5) == 4.0


def test_random_scenarios_are_repeatable_by_seed():
    a = Scenario.random(["a57", "gpu"], seed=7, duration_s=60.0)
    assert a == Scenario.random(["a57", "gpu"], seed=7, duration_s=60.0)
    assert a != Scenario.random(["a57", "gpu"], seed=8, duration_s=60.0)
    assert all(0.0 <= r.share <= 1.0 for p in a.phases for r in p.corunners)


def test_bad_scenarios_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="share"):
        CoRunner("gpu", 1.5)
    with pytest.raises(ValueError, match="overlap"):
        Scenario((Phase(0, 2), Phase(1, 3)))
    with pytest.raises(ValueError, match="end after"):
        Phase(2, 2)
