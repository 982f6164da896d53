"""Kernel behaviour the simulator emulates: governors, snapping, step-wise thermal capping."""

import math

import pytest

from governor.sim.dvfs import AUTO, DomainControl, Throttle, governed_hz, snap_within

TABLE = (100e6, 200e6, 400e6, 800e6, 1600e6)


def test_snap_within_takes_the_lowest_entry_at_or_above_target_inside_limits():
    assert snap_within(TABLE, 300e6, 0, math.inf) == 400e6
    assert snap_within(TABLE, 5e9, 0, 800e6) == 800e6
    assert snap_within(TABLE, 0, 200e6, 800e6) == 200e6
    assert snap_within(TABLE, 0, 900e6, 400e6) == 400e6  # min above max: max wins


@pytest.mark.parametrize(
    ("control", "load", "expected"),
    [
        (DomainControl("performance", 0, 800e6), 0.0, 800e6),
        (DomainControl("powersave", 200e6, 800e6), 1.0, 200e6),
        (DomainControl("userspace", 0, math.inf, setspeed_hz=390e6), 0.0, 400e6),
        (DomainControl("userspace", 0, 200e6, setspeed_hz=1600e6), 0.0, 200e6),
        (DomainControl("", 400e6, 400e6), 1.0, 400e6),  # pinned by limits
        (DomainControl(pinned_hz=800e6), 0.0, 800e6),  # EMC lock
        (DomainControl("schedutil", 0, math.inf), 0.0, 100e6),
        (DomainControl("schedutil", 0, math.inf), 1.0, 1600e6),
    ],
)
def test_governors_choose_like_the_kernel(control, load, expected):
    assert governed_hz(TABLE, control, load, 800e6) == expected


def test_load_following_governors_scale_with_load():
    picks = [governed_hz(TABLE, DomainControl(AUTO), load, 800e6) for load in (0.05, 0.2, 0.4, 0.9)]
    assert picks == sorted(picks) and picks[0] < picks[-1]


def test_throttle_steps_down_one_opp_per_hot_poll_and_recovers_with_hysteresis():
    th = Throttle({"cpu": TABLE}, hysteresis_c=3.0)
    zone = lambda t: [(t, 90.0, 100.0, ["cpu"])]  # noqa: E731
    th.poll(zone(91.0))
    th.poll(zone(91.0))
    assert th.cap_hz("cpu") == 400e6
    th.poll(zone(88.5))  # inside the hysteresis band: hold
    assert th.cap_hz("cpu") == 400e6
    th.poll(zone(80.0))
    assert th.cap_hz("cpu") == 800e6
    th.poll(zone(100.5))  # critical: straight to the bottom
    assert th.cap_hz("cpu") == 100e6 and th.throttled == {"cpu": 4}
    assert th.cap_hz("emc") == math.inf
