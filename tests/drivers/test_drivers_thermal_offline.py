"""Powered-off thermal zones (issue 21.3): JetPack 6 (L4T R36) fails the read with EAGAIN where JetPack 5
printed -256 °C. Neither is an error every tick, and a zone that gave no reading never counts as cool."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import numpy as np
import pytest

from governor.core.types import Observation
from governor.daemon.profiling import BoardSource
from governor.drivers._sysfs import SysfsError
from governor.drivers.board import open_board
from governor.drivers.catalogue import load_board
from governor.drivers.thermal import ThermalZones
from governor.testing import make_fake_tree

CV_ZONES = ("cv0-thermal", "cv1-thermal", "cv2-thermal")


def _zone_dir(tree, kind: str) -> str:
    return next(f"sys/class/thermal/thermal_zone{i}" for i, z in enumerate(tree.spec.thermal) if z.type == kind)


def test_jetpack6_tree_fails_reads_of_powered_off_zones_with_eagain(tmp_path):
    tree = make_fake_tree(load_board("jetson-agx-orin"), tmp_path)
    with pytest.raises(SysfsError) as err:
        tree.sysfs.read(f"{_zone_dir(tree, 'cv0-thermal')}/temp")
    assert err.value.errno == errno.EAGAIN
    assert tree.sysfs.read_int(f"{_zone_dir(tree, 'cpu-thermal')}/temp") > 30000


def test_jetpack5_tree_keeps_minus_256(tmp_path):
    spec = load_board("jetson-agx-orin")
    jp5 = spec.model_copy(update={"board": spec.board.model_copy(update={"software": "L4T R35.4.1 (JetPack 5.1.2)"})})
    tree = make_fake_tree(jp5, tmp_path)
    assert tree.sysfs.read_int(f"{_zone_dir(tree, 'cv0-thermal')}/temp") == -256000
    thermal = ThermalZones(tree.sysfs)
    thermal.probe()
    part = thermal.read_partial()
    assert not part.errors and set(thermal.offline) == set(CV_ZONES)


def test_powered_off_zones_are_left_out_without_an_error_and_said_at_probe(tmp_path):
    tree = make_fake_tree(load_board("jetson-agx-orin"), tmp_path)
    thermal = ThermalZones(tree.sysfs)
    probe = thermal.probe()
    assert all(z in probe.detail for z in CV_ZONES) and "powered off" in probe.detail
    for _tick in range(3):
        part = thermal.read_partial()
        assert dict(part.errors) == {}
        assert set(part.values) == {"cpu-thermal", "gpu-thermal", "soc0-thermal", "soc1-thermal", "soc2-thermal",
                                    "tj-thermal"}
    assert set(thermal.offline) == set(CV_ZONES)


def test_a_gpu_zone_that_powers_off_later_is_no_error_on_the_board(tmp_path):
    tree = make_fake_tree(load_board("jetson-agx-orin"), tmp_path)
    board = open_board(tree.spec, tree.sysfs, clock=lambda: 0.0)
    gpu_temp = tree.sysfs.canonical(f"{_zone_dir(tree, 'gpu-thermal')}/temp")
    tree.sysfs.update_state(lambda s: s.setdefault("read_errors", {}).update({gpu_temp: errno.EAGAIN}))
    obs = board.sample()
    assert "gpu-thermal" not in obs.temps_c and "cpu-thermal" in obs.temps_c
    assert not any("thermal" in p for p in obs.unavailable)
    tree.sysfs.update_state(lambda s: s["read_errors"].pop(gpu_temp))  # powered up again: read again
    assert "gpu-thermal" in board.sample().temps_c


def test_a_zone_that_gave_no_reading_does_not_count_as_cool():
    t = [0.0]

    class Board:
        power = ()
        spec = SimpleNamespace(thermal=[SimpleNamespace(type="cpu-thermal", passive_trip_c=99.0),
                                        SimpleNamespace(type="gpu-thermal", passive_trip_c=99.0)])

        def sample(self):  # the GPU zone is powered off (EAGAIN); tj, the hottest spot, is still hot
            return Observation(t=t[0], temps_c={"cpu-thermal": 60.0, "tj-thermal": 95.0 if t[0] < 4.0 else 70.0})

    def sleep(s):
        t[0] += s

    src = BoardSource(Board(), backend=None, batch=np.zeros(1), clock=lambda: t[0], sleep=sleep)
    src._cool_down()
    assert t[0] >= 4.0  # waited until the hottest reading was 10 °C below the GPU zone's trip

    class Blind(Board):
        def sample(self):
            return Observation(t=t[0])

    t[0] = 0.0
    BoardSource(Blind(), backend=None, batch=np.zeros(1), clock=lambda: t[0], sleep=sleep)._cool_down()
    assert t[0] == 0.0  # nothing read at all: nothing to wait on
