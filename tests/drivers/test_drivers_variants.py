"""Layouts drivers must survive: a rail-gated Jetson GPU, cpufreq without a table, other hwmon numbers."""

from __future__ import annotations

import itertools

import pytest

from governor.core.types import Setpoints
from governor.drivers.base import ProbeResult
from governor.drivers.board import open_board
from governor.drivers.catalogue import board_names, load_board
from governor.testing import make_fake_tree

SPECS = [load_board(n) for n in board_names()]
RAILGATED = [s for s in SPECS if any(d.kind == "gpu" and d.load_path for d in s.domains)]
POWERED = [s for s in SPECS if s.power]


def _clock() -> float:
    return 1.0


@pytest.mark.parametrize("spec", RAILGATED, ids=lambda s: s.name)
def test_a_rail_gated_gpu_is_left_out_until_a_start_finds_it_powered(spec, tmp_path):
    tree = make_fake_tree(spec, tmp_path / "root", variant="railgated")
    gpu = next(d for d in spec.domains if d.kind == "gpu")
    tree.deny(f"{gpu.load_path.rsplit('/', 1)[0]}/railgate_enable")  # not root: the probe cannot power it up
    board = open_board(spec, tree.sysfs, clock=_clock)
    assert gpu.name not in board.domains
    assert board.probes[gpu.name].result is ProbeResult.DEFER
    assert board.unavailable[gpu.name].startswith("defer:") and "rail-gated" in board.unavailable[gpu.name]
    assert board.sample().unavailable == ()

    tree.clear_faults()
    tree.sysfs.write(f"{gpu.load_path.rsplit('/', 1)[0]}/railgate_enable", 0)
    board = open_board(spec, tree.sysfs, clock=_clock)  # the next start probes it again
    assert board.probes[gpu.name].result is ProbeResult.SUCCESS
    assert gpu.name in board.domains and gpu.name not in board.unavailable
    top = board.domains[gpu.name].available_hz()[-1]
    assert board.apply(Setpoints({gpu.name: top}))[gpu.name].max_hz == top


def test_cpufreq_without_a_table_gets_a_grid_and_still_restores(tmp_path):
    spec = next(s for s in SPECS if s.discover_cpufreq)
    tree = make_fake_tree(spec, tmp_path / "root", variant="no-table")
    before = tree.snapshot_bytes()
    board = open_board(spec, tree.sysfs, clock=_clock)
    assert board.domains, board.unavailable
    baselines = board.snapshot()
    for domain in board.domains.values():
        grid = domain.available_hz()
        assert all(b - a <= 100_000_000 for a, b in itertools.pairwise(grid)) and len(grid) > 2
        lowest = domain.pin(grid[0])
        assert lowest.min_hz == lowest.max_hz and abs(lowest.max_hz - grid[0]) < 100_000_000
        highest = domain.pin(grid[-1])
        assert highest.min_hz == highest.max_hz and highest.max_hz > lowest.max_hz
    board.restore(baselines)
    assert tree.snapshot_bytes() == before


@pytest.mark.parametrize("spec", POWERED, ids=lambda s: s.name)
def test_hwmon_and_iio_numbers_are_never_assumed(spec, tmp_path):
    tree = make_fake_tree(spec, tmp_path / "root", hwmon_base=7)
    board = open_board(spec, tree.sysfs, clock=_clock)
    obs = board.sample()
    assert set(obs.power_mw) == {r.name for r in spec.rails if r.connected}, board.unavailable
    assert obs.total_power_mw is not None


def _switchable_cluster(spec):
    """A clocked cluster whose first CPU can go offline while others stay, or None."""
    return next((u for u in spec.units if u.domain and len(u.cpus) > 1 and u.cpus[0] in spec.hotplug_cpus), None)


HOTPLUG = [s for s in SPECS if _switchable_cluster(s)]


@pytest.mark.parametrize("spec", HOTPLUG, ids=lambda s: s.name)
def test_a_cluster_keeps_its_domain_while_its_first_cpu_is_offline(spec, tmp_path):
    unit = _switchable_cluster(spec)
    tree = make_fake_tree(spec, tmp_path / "root")
    before = tree.snapshot_bytes()
    board = open_board(spec, tree.sysfs, clock=_clock)
    baselines = board.snapshot()
    board.hotplug.set_online(set(board.hotplug.cpus) - {unit.cpus[0]})
    obs = board.sample()
    assert unit.domain in obs.domains, obs.unavailable
    top = board.domains[unit.domain].available_hz()[-1]
    applied = board.apply(Setpoints({unit.domain: top}))
    assert applied[unit.domain].max_hz == top, applied.errors
    board.restore(baselines)
    assert tree.snapshot_bytes() == before


def test_a_domain_whose_baseline_cannot_be_read_is_never_touched(tmp_path):
    spec = load_board("jetson-tx2")
    tree = make_fake_tree(spec, tmp_path / "root")
    board = open_board(spec, tree.sysfs, clock=_clock)
    emc = board.domains["emc"]
    tree.deny(f"{emc.dir}/mrq_rate_locked", reads=True)
    owners = {b.owner for b in board.snapshot()}
    assert "emc" not in board.domains and emc.owner not in owners
    assert "cannot save its baseline" in board.unavailable["emc"] and "root" in board.unavailable["emc"]
    assert board.apply(Setpoints({"emc": emc.available_hz()[-1]})).errors["emc"] == board.unavailable["emc"]
