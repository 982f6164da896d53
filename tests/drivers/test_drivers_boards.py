"""Every driver against the fake tree of every catalogue board (governor.testing builds the trees).

The fake trees carry kernel write semantics: table snapping, EINVAL on an inverted min/max on
``limit_writes = "einval"`` boards (clamping on the others), read-only files and vanishing nodes.
"""

from __future__ import annotations

import json

import pytest

from governor import testing
from governor.core.types import Setpoints
from governor.drivers._sysfs import SysfsPermission, SysfsRejected
from governor.drivers.base import Baseline, FreqDomain, PowerSensor, ProbeResult
from governor.drivers.board import Board, RestoreError, open_board
from governor.drivers.catalogue import board_names, load_board
from governor.drivers.detect import detect_board
from governor.drivers.power import INPUT_RAILS

BOARDS = board_names()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += 0.5
        return self.t


@pytest.fixture(scope="module", params=BOARDS)
def shared(request, tmp_path_factory):
    """One tree per board for tests that inject no fault (each sets the state it needs)."""
    return testing.make_fake_tree(load_board(request.param), tmp_path_factory.mktemp(request.param) / "root", seed=1)


@pytest.fixture(params=BOARDS)
def tree(request, tmp_path):
    """A fresh tree for tests that break it or compare it byte for byte."""
    return testing.make_fake_tree(load_board(request.param), tmp_path / "root", seed=1)


def _open(tree, **kwargs) -> Board:
    return open_board(tree.spec, tree.sysfs, clock=Clock(), **kwargs)


def _expected_rails(spec) -> set[str]:
    return {r.name for r in spec.rails if r.connected}


def test_every_catalogue_part_probes(shared):
    board = _open(shared)
    spec = shared.spec
    assert set(board.domains) >= {d.name for d in spec.domains}, board.unavailable
    if spec.discover_cpufreq:
        assert any(d.kind == "cpu" for d in board.domains.values()), board.unavailable
    assert len(board.power) == len(spec.power), board.unavailable
    assert all(isinstance(d, FreqDomain) for d in board.domains.values())
    assert all(isinstance(s, PowerSensor) for s in board.power)
    assert board.thermal or not spec.thermal, board.unavailable
    assert (board.hotplug is not None) == bool(spec.hotplug_cpus), board.unavailable
    for domain in board.domains.values():
        assert domain.available_hz(), domain.name


def test_detection_finds_the_board(shared):
    assert detect_board(shared.sysfs).name == shared.spec.name


def test_sample_reports_every_part_in_core_units(shared):
    board = _open(shared)
    obs = board.sample()
    assert obs.unavailable == (), obs.unavailable
    assert set(obs.domains) == set(board.domains)
    for name, reading in obs.domains.items():
        table = board.domains[name].available_hz()
        assert table[0] <= reading.min_hz <= reading.max_hz <= table[-1], name
    assert set(obs.power_mw) == _expected_rails(shared.spec)
    assert all(0 <= mw < 200_000 for mw in obs.power_mw.values())
    if shared.spec.power:
        assert obs.total_power_mw is not None and obs.total_power_mw > 0
        inputs = [r for r in obs.power_mw if r in shared.spec.power_total or r in INPUT_RAILS]
        assert obs.total_power_mw <= sum(obs.power_mw.values()) or inputs
    enabled = {z.type for z in shared.spec.thermal if not z.disabled}
    assert enabled <= set(obs.temps_c)
    assert not {z.type for z in shared.spec.thermal if z.disabled} & set(obs.temps_c)
    assert all(-40 < c < 130 for c in obs.temps_c.values())
    cpu_units = {u.name for u in shared.spec.units if u.kind == "cpu"}
    assert cpu_units <= set(obs.util) and all(0.0 <= u <= 1.0 for u in obs.util.values())
    assert obs.t > 100.0 and obs.simulated is False


def _walk(domain):
    """Narrow low, jump to the top, narrow high, jump to the bottom: both crossings of the range."""
    table = domain.available_hz()
    domain.set_range(table[0], table[min(1, len(table) - 1)])
    up = domain.pin(table[-1])
    domain.set_range(table[max(len(table) - 2, 0)], table[-1])
    down = domain.pin(table[0])
    return table, up, down


def test_pinning_across_the_current_range_in_both_directions(shared):
    board = _open(shared)
    for domain in board.domains.values():
        table, up, down = _walk(domain)
        assert up.min_hz == up.max_hz == table[-1], (domain.name, up)
        assert down.min_hz == down.max_hz == table[0], (domain.name, down)
        assert up.cur_hz in table and down.cur_hz in table


def test_the_fake_kernel_really_enforces_its_limit_rule(shared):
    """Guards the previous test: on EINVAL boards the wrong order must fail."""
    board = _open(shared)
    cpus = [d for d in board.domains.values() if d.kind == "cpu"]
    if not cpus:
        pytest.skip("no cpufreq domain")
    policy = cpus[0]
    table = policy.available_hz()
    policy.pin(table[0])
    rel = f"{policy.dir}/scaling_min_freq"
    if shared.spec.board.limit_writes == "einval":
        with pytest.raises(SysfsRejected):
            shared.sysfs.write(rel, table[-1] // 1000)
    else:
        shared.sysfs.write(rel, table[-1] // 1000)
        reading = policy.read()
        assert reading.min_hz <= reading.max_hz


def test_requests_between_table_entries_snap_to_the_nearest_entry(shared):
    board = _open(shared)
    for domain in board.domains.values():
        table = domain.available_hz()
        nearer_top = table[1] - (table[1] - table[0]) // 3
        assert domain.pin(nearer_top).max_hz == table[1], domain.name
        nearer_bottom = table[0] + (table[1] - table[0]) // 3
        assert domain.pin(nearer_bottom).max_hz == table[0], domain.name


def test_the_kernels_snapping_is_what_pin_reports(shared):
    """A catalogue table that is off by one native unit: the kernel snaps, the read-back says so."""
    board = _open(shared)
    for name, domain in board.domains.items():
        if domain.spec.driver == "mali-vendor":
            continue  # the vendor driver refuses values outside its table instead of snapping
        kernel = domain.available_hz()
        skewed = domain.spec.model_copy(update={"table": tuple(f + 1 for f in domain._table)})
        liar = type(domain)(shared.sysfs, skewed)
        assert liar.probe().result is ProbeResult.SUCCESS
        for k in (len(kernel) - 1, 0, len(kernel) // 2):
            request = liar.available_hz()[k]
            reading = liar.pin(request)
            assert reading.max_hz in kernel and reading.max_hz != request, (name, k, reading)
            assert abs(reading.max_hz - request) < max(kernel[1] - kernel[0], kernel[-1] - kernel[-2]), name


def _other_end(domain) -> int:
    table = domain.available_hz()
    return table[0] if domain.read().max_hz != table[0] else table[-1]


def test_a_read_only_domain_fails_alone_and_says_how_to_fix_it(tree):
    board = _open(tree)
    assert len(board.domains) >= 2, board.unavailable
    victim, *others = board.domains.values()
    for rel, _ in victim.snapshot().files:
        tree.make_readonly(rel)
    applied = board.apply(Setpoints({d.name: _other_end(d) for d in board.domains.values()}))
    assert victim.name in applied.errors and victim.name not in applied
    assert "root" in applied.errors[victim.name] and "udev" in applied.errors[victim.name]
    assert {d.name for d in others} <= set(applied) and not set(applied.errors) - {victim.name}
    for domain in others:
        assert applied[domain.name].max_hz == _other_end(domain) or applied[domain.name] == domain.read()
    with pytest.raises(SysfsPermission, match="udev rule"):
        victim.pin(_other_end(victim))


def test_vanished_parts_are_listed_and_the_rest_keeps_serving(tree):
    board = _open(tree)
    first = board.sample()
    names = list(board.domains)
    survivor, gone_domain = names[0], names[-1]
    tree.vanish(board.domains[gone_domain].dir)
    lost_rails = set(board.power[0].rails) if board.power else set()
    if board.power:
        tree.vanish(board.power[0].dir)
    zones = {tree.sysfs.read(f"{z}/type"): z for z in tree.sysfs.glob("sys/class/thermal/thermal_zone*")}
    hot = next((kind for kind in first.temps_c if kind in zones), None)
    assert hot or not tree.spec.thermal
    if hot:
        tree.vanish(tree.sysfs.realpath(zones[hot]))

    obs = board.sample()
    reasons = " ".join(obs.unavailable)
    assert any(item.startswith(f"{gone_domain}:") for item in obs.unavailable)
    assert set(obs.domains) == set(first.domains) - {gone_domain}
    assert not lost_rails & set(obs.power_mw) and all(rail in reasons for rail in lost_rails)
    assert set(obs.power_mw) == set(first.power_mw) - lost_rails
    if hot:
        assert hot in reasons and set(obs.temps_c) == set(first.temps_c) - {hot}
    # a load file inside the vanished domain's directory (the XU3 Mali's utilization) goes with it
    gone_dir = tree.sysfs.realpath(board.domains[gone_domain].dir)
    gone_loads = {s.unit for s in board.load if getattr(s, "found_at", "").startswith(f"{gone_dir}/")}
    assert set(obs.util) == set(first.util) - gone_loads
    assert all(any(item.startswith(f"{unit}:") for item in obs.unavailable) for unit in gone_loads)
    table = board.domains[survivor].available_hz()
    applied = board.apply(Setpoints({gone_domain: table[-1], survivor: table[-1]}))
    assert gone_domain in applied.errors and applied[survivor].max_hz == table[-1]


def _setpoint_sequence(board: Board, n: int = 4) -> list[Setpoints]:
    sequence = []
    for step in range(n):
        hz = {}
        for name, domain in board.domains.items():
            table = domain.available_hz()
            hz[name] = table[(step * 5 + len(name)) % len(table)] if step % 2 else table[-1 - step % len(table)]
        sequence.append(Setpoints(hz))
    return sequence


@pytest.mark.parametrize("mode", ["limits", "userspace"])
def test_apply_then_restore_is_byte_identical(tree, mode):
    before = tree.snapshot_bytes()
    board = _open(tree, mode=mode)
    baselines = board.snapshot()
    saved = json.loads(json.dumps([b.to_json() for b in baselines]))
    for setpoints in _setpoint_sequence(board):
        applied = board.apply(setpoints)
        assert not applied.errors, applied.errors
    if board.hotplug:
        board.hotplug.set_online(board.hotplug.cpus[:1])
    board.restore([Baseline.from_json(item) for item in saved])
    after = tree.snapshot_bytes()
    changed = sorted(rel for rel in set(before) | set(after) if before.get(rel) != after.get(rel))
    assert changed == [], changed


def test_restore_reports_baselines_it_cannot_place(shared):
    board = _open(shared)
    with pytest.raises(RestoreError, match="no such part"):
        board.restore([Baseline(owner="cpufreq:not-a-domain", files=(("x", "1"),))])


def test_probe_results_are_recorded(shared):
    board = _open(shared)
    assert all(p.result is ProbeResult.SUCCESS for name, p in board.probes.items() if name not in board.unavailable)
    assert set(board.unavailable) <= set(board.probes)
