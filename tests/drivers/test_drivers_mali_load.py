"""Odroid Mali (issue 21.8): the XU3's GPU load is read as a percent; the XU4's devfreq0 name is found."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from governor.drivers.board import open_board
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree

XU3_MALI = "sys/devices/11800000.mali"
XU4_NODE = "sys/devices/platform/11800000.mali/devfreq"


def _clock() -> float:
    return 1.0


@pytest.fixture
def xu3(tmp_path):
    spec = load_board("odroid-xu3")
    return spec, make_fake_tree(spec, tmp_path / "xu3")


def test_xu3_gpu_utilization_is_a_percent(xu3):
    spec, tree = xu3
    board = open_board(spec, tree.sysfs, clock=_clock)
    tree.set_file(f"{XU3_MALI}/utilization", "50")
    assert board.sample().util["gpu"] == pytest.approx(0.5)
    tree.set_file(f"{XU3_MALI}/utilization", "100")
    assert board.sample().util["gpu"] == pytest.approx(1.0)


def test_xu3_gpu_load_records_where_it_was_found(xu3):
    spec, tree = xu3
    board = open_board(spec, tree.sysfs, clock=_clock)
    load = next(s for s in board.load if s.name == "gpu-load:gpu")
    assert load.found_at == f"{XU3_MALI}/utilization"
    assert load.tried == (f"{XU3_MALI}/utilization",)


def test_xu3_utilization_of_minus_one_is_unavailable_not_idle(xu3):
    spec, tree = xu3
    board = open_board(spec, tree.sysfs, clock=_clock)
    tree.set_file(f"{XU3_MALI}/utilization", "-1")
    obs = board.sample()
    assert "gpu" not in obs.util
    assert any(u.startswith("gpu:") and "DVFS off" in u for u in obs.unavailable)


def test_simulated_xu3_publishes_gpu_load_as_a_percent(tmp_path):
    from governor.sim.sensors import StatPublisher

    spec = load_board("odroid-xu3")
    tree = make_fake_tree(spec, tmp_path / "xu3")
    engine = SimpleNamespace(util={"gpu": 0.42}, online=set(), busy_s={}, up_s={})
    StatPublisher(tree, spec).publish(engine)
    assert tree.sysfs.read(f"{XU3_MALI}/utilization").strip() == "42"
    assert open_board(spec, tree.sysfs, clock=_clock).sample().util["gpu"] == pytest.approx(0.42)


@pytest.mark.parametrize(("variant", "node"), [("", "11800000.mali"), ("devfreq-numbered", "devfreq0")])
def test_xu4_mali_devfreq_is_found_under_either_name(tmp_path, variant, node):
    spec = load_board("odroid-xu4")
    tree = make_fake_tree(spec, tmp_path / "xu4", variant=variant)
    assert tree.sysfs.exists(f"{XU4_NODE}/{node}/cur_freq")
    tree.sysfs.files.remove(f"sys/class/devfreq/{node}")  # a container without the class directory
    board = open_board(spec, tree.sysfs, clock=_clock)
    assert board.domains["gpu"].dir == f"{XU4_NODE}/{node}"
    top = board.domains["gpu"].available_hz()[-1]
    board.domains["gpu"].pin(top)
    assert board.sample().domains["gpu"].cur_hz == top


def test_devfreq_numbered_needs_a_devfreq_domain(tmp_path):
    with pytest.raises(ValueError, match="needs a devfreq domain"):
        make_fake_tree(load_board("odroid-xu3"), tmp_path / "xu3", variant="devfreq-numbered")
