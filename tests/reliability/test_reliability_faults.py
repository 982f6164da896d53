"""Faults injected into a fake Jetson Nano under a running daemon (build_app, real drivers, ipc clients).

For each fault the daemon must keep serving with what remains, say what failed in ``status``, and
at shutdown put back what it changed, so the tree ends byte-identical to how the daemon found it.
Where the fault itself changes the tree (nodes that vanished, a kernel that switched power mode),
the comparison says exactly which files differ and why, or compares with a twin tree that went
through the same kernel-side events without any daemon.
"""

from __future__ import annotations

import errno
import itertools

import numpy as np
import pytest
from reliability_helpers import LiveApp, changed_files, wait_for

from governor.cli.main import main as governor_main
from governor.drivers.catalogue import load_board
from governor.drivers.jtop import JtopSensors
from governor.drivers.tegrastats import SensorMapping
from governor.testing import FakeTree, make_fake_tree

CPU = "sys/devices/system/cpu/cpufreq/policy0"
GPU = "sys/devices/57000000.gpu/devfreq/57000000.gpu"
X = np.zeros((1, 1, 8, 8), np.float32)


@pytest.fixture
def live(nano_tree, quick_model, profiled_state, scratch, monkeypatch):
    """A daemon on ``nano_tree``, not started yet (``with live:`` starts it), and the tree's baseline."""
    monkeypatch.setenv("STATE_DIRECTORY", str(profiled_state))
    baseline = nano_tree.snapshot_bytes()
    app = LiveApp(nano_tree.root, quick_model, scratch("gr-w-"))
    yield app, nano_tree, baseline
    if not app.stopped:
        app.stop()


def zone(tree: FakeTree, kind: str) -> str:
    return next(z for z in tree.sysfs.glob("sys/devices/virtual/thermal/thermal_zone*")
                if tree.sysfs.read(f"{z}/type").strip() == kind)


def status_when(client, check, what):
    return wait_for(lambda: (lambda s: s if check(s) else None)(client.status()), 10.0, what)


def survived(figures, name: str) -> None:
    figures.append(f"fault survived, tree restored: {name}")


def break_cpu_limits(tree: FakeTree, fault: str) -> None:
    """Make both CPU limit files refuse writes, so pinning the CPU at any clock fails."""
    for leaf in ("scaling_min_freq", "scaling_max_freq"):
        if fault.startswith("EACCES"):
            tree.deny(f"{CPU}/{leaf}")
        else:
            tree.fail_writes(f"{CPU}/{leaf}", getattr(errno, fault))


@pytest.mark.parametrize("fault", ["EIO", "EINVAL", "EPERM", "EACCES (deny)"])
def test_reliability_failing_writes_are_reported_retried_and_restored(live, fault, figures):
    app, tree, baseline = live
    with app, app.client() as client:
        break_cpu_limits(tree, fault)
        res = client.infer(X, deadline_ms=500)
        assert any(u.startswith("cpu: could not set") for u in client.status().unavailable)
        # The other domains applied (status shows the next sensor tick, hence the wait).
        status_when(client, lambda s: s.domains["emc"].cur_hz == res.point.setpoints_hz["emc"], "the EMC pinned")
        tree.clear_faults()  # the fault was transient: the next request writes again and succeeds
        res = client.infer(X, deadline_ms=500)
        assert not any(u.startswith("cpu:") for u in client.status().unavailable)
        cpu = res.point.setpoints_hz["cpu"]
        status = status_when(client, lambda s: s.domains["cpu"].min_hz == s.domains["cpu"].max_hz == cpu, "the CPU")
        assert status.served == 2
    assert app.stop() is None and app.loop_error is None
    assert changed_files(baseline, tree.snapshot_bytes()) == []
    assert not app.state_file.exists()
    survived(figures, f"CPU limit writes failing with {fault}")


def test_reliability_write_fault_at_shutdown_keeps_the_state_file_until_restore(live, figures):
    app, tree, baseline = live
    with app, app.client() as client:
        client.infer(X, deadline_ms=500)
        break_cpu_limits(tree, "EIO")
    pinned = changed_files(baseline, tree.snapshot_bytes())
    error = app.stop()
    assert error is not None and "cpu" in str(error), error  # the failed restore is reported, not swallowed
    assert app.state_file.exists()  # so the baseline survives for `governor restore`
    left = changed_files(baseline, tree.snapshot_bytes())
    assert left and all(path.startswith(CPU) for path in left) and set(left) <= set(pinned)
    tree.clear_faults()
    assert governor_main(["restore", "--state-file", str(app.state_file)]) == 0
    assert changed_files(baseline, tree.snapshot_bytes()) == []
    assert not app.state_file.exists()
    survived(figures, "CPU limit writes failing with EIO through shutdown, then `governor restore`")


def test_reliability_vanished_and_frozen_sensors_are_reported(live, figures):
    app, tree, baseline = live
    power = tree.sysfs.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device0/in_power0_input")[0]  # POM_5V_IN
    with app, app.client() as client:
        client.infer(X, deadline_ms=500)
        gone = tree.vanish(power) + tree.vanish(zone(tree, "CPU-therm"))
        tree.freeze(f"{zone(tree, 'GPU-therm')}/temp")
        assert not tree.set_file(f"{zone(tree, 'GPU-therm')}/temp", "88000")  # the kernel's update is lost
        status = status_when(client, lambda s: len(s.unavailable) >= 2 and "CPU-therm" not in s.temps_c,
                             "status to list the vanished sensors")
        assert status.total_power_mw is None and status.temps_c["GPU-therm"] < 88
        assert any("POM_5V_IN" in u for u in status.unavailable) and any("CPU-therm" in u for u in status.unavailable)
        assert client.infer(X, deadline_ms=500, objective="min_latency").point.k >= 1
    assert app.stop() is None and app.loop_error is None
    # The vanished nodes are gone for good (a driver unload); every other file is back to its baseline.
    assert changed_files(baseline, tree.snapshot_bytes()) == sorted(p for p in baseline if any(
        p == g or p.startswith(g + "/") for g in gone))
    survived(figures, "power rail and thermal zone vanished, thermal zone frozen")


def test_reliability_vanished_domain_is_restored_as_far_as_it_exists(live, figures):
    """A DVFS node that goes away (driver unloaded) after it was pinned: serving goes on, the restore
    puts back everything else, and the vanished part's baseline is kept aside instead of blocking
    every later start of the daemon."""
    from governor.daemon.statefile import load_state

    app, tree, baseline = live
    with app, app.client() as client:
        client.infer(X, deadline_ms=500)
        gone = tree.vanish(GPU)
        status_when(client, lambda s: any(u.startswith("gpu:") for u in s.unavailable), "the GPU listed")
        for objective in ("min_latency", "max_accuracy"):
            assert client.infer(X, deadline_ms=500, objective=objective).point.k >= 1
    error = app.stop()
    assert error is not None and "gpu" in str(error) and app.state_file.exists()
    assert governor_main(["restore", "--state-file", str(app.state_file)]) == 0
    kept = app.state_file.with_name(app.state_file.name + ".unrestored")
    assert not app.state_file.exists() and "devfreq:gpu" in {b.owner for b in load_state(kept).baselines}
    assert changed_files(baseline, tree.snapshot_bytes()) == sorted(p for p in baseline if p.startswith(gone[0]))
    survived(figures, "GPU devfreq node vanished after it was pinned")


def test_reliability_garbage_sensor_values_cost_only_their_reading(live, figures):
    app, tree, baseline = live
    power = tree.sysfs.glob("sys/bus/i2c/drivers/ina3221x/*/iio:device0/in_power1_input")[0]
    cpu_zone = zone(tree, "CPU-therm")
    with app, app.client() as client:
        tree.set_file(power, "-150")  # a negative rail reading
        tree.set_file(f"{cpu_zone}/temp", "2147483647")  # 2 million °C
        status = status_when(client, lambda s: len(s.unavailable) >= 2, "status to list the faulty readings")
        assert "CPU-therm" not in status.temps_c and status.temps_c  # the other zones still reported
        assert any("sensor fault" in u for u in status.unavailable)
        assert client.infer(X, deadline_ms=500).point.k >= 1
        tree.set_file(power, baseline[tree.sysfs.canonical(power)])
        tree.set_file(f"{cpu_zone}/temp", baseline[f"{cpu_zone}/temp"])
    assert app.stop() is None and app.loop_error is None
    assert changed_files(baseline, tree.snapshot_bytes()) == []
    survived(figures, "negative power and 2e6 °C readings")


def test_reliability_duplicate_zone_types_get_protocol_names(nano_tree, quick_model, profiled_state, scratch,
                                                             monkeypatch, figures):
    """Two zones of one type (PCs have several 'acpitz') are named 'type@zoneN' by the driver."""
    monkeypatch.setenv("STATE_DIRECTORY", str(profiled_state))
    zones = sorted(nano_tree.sysfs.glob("sys/class/thermal/thermal_zone*"))
    nano_tree.set_file(f"{zones[1]}/type", nano_tree.sysfs.read(f"{zones[0]}/type"))
    baseline = nano_tree.snapshot_bytes()
    with LiveApp(nano_tree.root, quick_model, scratch("gr-w-")) as app, app.client() as client:
        status = status_when(client, lambda s: s.temps_c, "temperatures")
        assert any(name.endswith("_thermal_zone1") for name in status.temps_c), status.temps_c
    assert app.loop_error is None
    assert changed_files(baseline, nano_tree.snapshot_bytes()) == []
    survived(figures, "two thermal zones of one type")


class FakeJtopClient:
    """The jetson-stats client as JtopSensors uses it; ``up`` is the service's state."""

    up = True

    def __init__(self, interval: float) -> None:
        self.interval = interval

    def start(self) -> None:
        if not FakeJtopClient.up:
            raise ConnectionError("The jtop.service is not active")

    def ok(self, spin: bool = False) -> bool:
        if not FakeJtopClient.up:
            raise ConnectionError("Lost connection with jtop server")
        return True

    def close(self) -> None:
        return None

    temperature = property(lambda self: {"jtop-board": {"online": True, "temp": 41.5}})
    power = property(lambda self: {})
    gpu = property(lambda self: {})
    cpu = property(lambda self: {"cpu": []})
    memory = property(lambda self: {})


def test_reliability_lost_jtop_service_is_reported(live, monkeypatch, figures):
    app, tree, baseline = live
    monkeypatch.setattr(FakeJtopClient, "up", True)
    jtop = JtopSensors(SensorMapping(), client_factory=FakeJtopClient)
    assert jtop.start().result.value == "success"
    app.app.target.board.thermal.append(jtop)  # before the loop starts: the daemon reads it every tick
    with app, app.client() as client:
        status_when(client, lambda s: "jtop-board" in s.temps_c, "jtop's temperature")
        FakeJtopClient.up = False
        status = status_when(client, lambda s: any(u.startswith("jtop") for u in s.unavailable), "jtop lost")
        assert "restart jtop" in next(u for u in status.unavailable if u.startswith("jtop"))
        assert "jtop-board" not in status.temps_c and "CPU-therm" in status.temps_c
        assert client.infer(X, deadline_ms=500).point.k >= 1
    assert app.stop() is None and app.loop_error is None
    assert changed_files(baseline, tree.snapshot_bytes()) == []
    survived(figures, "jtop service went away")


def pin_cpu_above_its_lowest_clock(client) -> int:
    """Send requests until one pins the CPU above the bottom of its table; returns that clock (Hz).

    On a fake tree clocks do not change the real speed, so which clock a budget gets is up to the
    noisy 12-point profile; some budget of these always picks a higher one."""
    lowest = min(load_board("jetson-nano").domain("cpu").table_hz)
    for objective, deadline in itertools.product(("min_latency", "max_accuracy", "min_energy"), (0.5, 5.0, 500)):
        hz = client.infer(X, deadline_ms=deadline, objective=objective).point.setpoints_hz["cpu"]
        if hz > lowest:
            return hz
    raise AssertionError("no budget pinned the CPU above its lowest clock")


def cooling_cap(tree: FakeTree, cap_khz: int | None) -> None:
    """The CPU cooling device holding the policy at ``cap_khz`` (None: released), as the kernel keeps it:
    limits and clock clamped now, and every later write clamped too (a PM-QoS cap)."""
    table = [f for f in load_board("jetson-nano").domain("cpu").table if cap_khz is None or f <= cap_khz]
    tree.sysfs.update_state(lambda s: s["nodes"][CPU].update(table=table))
    for leaf in ("scaling_max_freq", "scaling_min_freq", "scaling_cur_freq", "cpuinfo_cur_freq"):
        tree.set_file(f"{CPU}/{leaf}", str(min(int(tree.sysfs.read(f"{CPU}/{leaf}")), table[-1])))


def test_reliability_thermal_trip_caps_the_choices(live, figures):
    app, tree, baseline = live
    cpu_zone = zone(tree, "CPU-therm")
    table = load_board("jetson-nano").domain("cpu").table
    with app, app.client() as client:
        pinned = pin_cpu_above_its_lowest_clock(client)
        cap = max(f for f in table if f * 1000 < pinned)  # kHz, one step below the pinned clock
        tree.set_file(f"{cpu_zone}/temp", "97000")
        cooling_cap(tree, cap)
        status = status_when(client, lambda s: s.temps_c.get("CPU-therm") == 97.0, "the hot zone")
        scheduler = app.app.daemon.machine.planner
        wait_for(lambda: scheduler.caps_hz.get("cpu") == cap * 1000, 5.0, "the scheduler's cap")
        first = client.infer(X, deadline_ms=500, objective="min_latency")
        assert first.point.setpoints_hz["cpu"] <= cap * 1000  # the cap seen: no point above it
        for objective in ("max_accuracy", "min_energy", "min_latency"):  # the kernel never runs above it
            assert client.infer(X, deadline_ms=500, objective=objective).point.k >= 1
            assert int(tree.sysfs.read(f"{CPU}/scaling_cur_freq")) <= cap
        tree.set_file(f"{cpu_zone}/temp", baseline[f"{cpu_zone}/temp"])  # the trip is over
        cooling_cap(tree, None)
    assert status.domains["cpu"].cur_hz == cap * 1000 and app.stop() is None and app.loop_error is None
    assert changed_files(baseline, tree.snapshot_bytes()) == []
    survived(figures, f"thermal trip (CPU pinned at {pinned / 1e6:g} MHz, capped at {cap / 1e3:g} MHz)")


def nvpmodel_5w(tree: FakeTree) -> None:
    """What a switch to the Nano's 5 W mode does, kernel side: CPU table and clock capped at 918 MHz
    (a PM-QoS cap, so writes above it are clamped), CPUs 2-3 taken offline."""
    table = [f for f in load_board("jetson-nano").domain("cpu").table if f <= 918000]
    tree.sysfs.update_state(lambda s: s["nodes"][CPU].update(table=table))
    tree.set_file(f"{CPU}/scaling_available_frequencies", " ".join(map(str, table)) + " ")
    for leaf in ("scaling_max_freq", "cpuinfo_max_freq"):
        tree.set_file(f"{CPU}/{leaf}", str(table[-1]))
    for leaf in ("scaling_min_freq", "scaling_cur_freq", "cpuinfo_cur_freq"):
        tree.set_file(f"{CPU}/{leaf}", str(min(int(tree.sysfs.read(f"{CPU}/{leaf}")), table[-1])))
    for cpu in (2, 3):
        tree.sysfs.write(f"sys/devices/system/cpu/cpu{cpu}/online", 0)


def test_reliability_nvpmodel_switch_mid_run_is_respected(live, scratch, figures):
    """The tree must end as a twin that went through the same switch without any daemon."""
    app, tree, baseline = live
    twin = make_fake_tree(load_board("jetson-nano"), scratch("gr-twin-"))
    assert twin.snapshot_bytes() == baseline
    with app, app.client() as client:
        client.infer(X, deadline_ms=500)
        nvpmodel_5w(tree)
        nvpmodel_5w(twin)
        status = status_when(client, lambda s: s.domains["cpu"].max_hz <= 918_000_000, "the capped CPU")
        for objective in ("min_latency", "max_accuracy"):  # whatever they pick, the kernel holds <= 918 MHz
            assert client.infer(X, deadline_ms=500, objective=objective).point.k >= 1
            assert int(tree.sysfs.read(f"{CPU}/scaling_cur_freq")) <= 918000
        assert status.served == 1
    assert app.stop() is None and app.loop_error is None
    assert changed_files(twin.snapshot_bytes(), tree.snapshot_bytes()) == []  # CPUs 2-3 stay offline
    survived(figures, "nvpmodel switch to 5 W (table capped, CPUs offlined) mid-run")


def test_reliability_rail_gated_gpu_is_served_and_its_rail_gating_restored(quick_model, profiled_state, scratch,
                                                                          monkeypatch, figures):
    """A Nano whose GPU is rail-gated at start (no devfreq node until it powers up): the daemon saves
    railgate_enable as found in its state file before writing it, then serves the GPU, and its exit
    puts rail-gating back (issue 21.5)."""
    from governor.daemon.statefile import load_state

    monkeypatch.setenv("STATE_DIRECTORY", str(profiled_state))
    tree = make_fake_tree(load_board("jetson-nano"), scratch("gr-rg-"), variant="railgated")
    railgate = "sys/devices/57000000.gpu/railgate_enable"
    baseline = tree.snapshot_bytes()
    app = LiveApp(tree.root, quick_model, scratch("gr-w-"))
    saved = {b.owner: dict(b.files) for b in load_state(app.state_file).baselines}
    assert saved["railgate:gpu"] == {railgate: "1\n"} and "devfreq:gpu" in saved  # both before any write
    assert "gpu" in app.app.target.board.domains  # held up, it joined
    with app, app.client() as client:
        assert client.infer(X, deadline_ms=500, objective="min_latency").point.k >= 1
    assert app.stop() is None and app.loop_error is None
    assert tree.sysfs.read(railgate) == "1"
    # Written back: every file but the kernel's own is_railgated, and the devfreq node nvgpu keeps once up.
    assert [p for p in changed_files(baseline, tree.snapshot_bytes()) if p in baseline] == [
        "sys/devices/57000000.gpu/is_railgated"]
    survived(figures, "GPU rail-gated at start")
