"""devfreq on hand-built trees: finding the GPU by of_node, rail-gated DEFER, order, userspace, restore."""

from __future__ import annotations

from drivers_handmade import OldKernelRoot, build

from governor.core.board import Domain
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.base import ProbeResult
from governor.drivers.devfreq import Devfreq, find_devfreq

REAL = "sys/devices/gpu.0/devfreq/17000000.gp10b"
OTHER = "sys/devices/platform/dmc/devfreq/dmc"
TABLE = (114750000, 522750000, 1300500000)


def _spec(**update) -> Domain:
    spec = Domain(
        name="gpu", kind="gpu", driver="devfreq", unit="Hz", paths=("sys/class/devfreq/*",), of_node=("gp10b", "gpu"),
        load_path="sys/devices/gpu.0/load", table=TABLE, default_governor="nvhost_podgov",
    )
    return spec.model_copy(update=update)


def _tree(tmp_path, lo=114750000, hi=1300500000, governors="nvhost_podgov userspace performance"):
    files = {
        f"{REAL}/cur_freq": str(lo), f"{REAL}/min_freq": str(lo), f"{REAL}/max_freq": str(hi),
        f"{REAL}/governor": "nvhost_podgov", f"{REAL}/available_governors": governors,
        f"{REAL}/available_frequencies": " ".join(map(str, TABLE)), f"{REAL}/userspace/set_freq": "0",
        "sys/devices/gpu.0/of_node/name": "gp10b\x00", f"{OTHER}/cur_freq": "1",
        "sys/devices/platform/dmc/of_node/name": "dmc\x00", "sys/devices/gpu.0/load": "0",
    }
    # The class dir sorts the memory bus first, so a scan that ignored of_node would pick it.
    links = {
        "sys/class/devfreq/0.dmc": OTHER, "sys/class/devfreq/17000000.gp10b": REAL,
        f"{REAL}/device": "sys/devices/gpu.0", f"{OTHER}/device": "sys/devices/platform/dmc",
    }
    build(tmp_path, files, links)
    return OldKernelRoot(tmp_path, {f"{REAL}/min_freq": f"{REAL}/max_freq"})


def test_the_entry_is_found_by_of_node_name_and_resolved(tmp_path):
    root = _tree(tmp_path)
    assert find_devfreq(root, _spec()) == REAL
    assert find_devfreq(root, _spec(of_node=("gv11b",))) is None
    assert find_devfreq(root, _spec(of_node=())) == OTHER


def test_pin_orders_writes_and_reads_back_in_hz(tmp_path):
    root = _tree(tmp_path, lo=114750000, hi=522750000)
    gpu = Devfreq(root, _spec())
    assert gpu.probe().result is ProbeResult.SUCCESS
    reading = gpu.pin(1_300_000_000)
    assert [w[0].rsplit("/", 1)[1] for w in root.writes] == ["max_freq", "min_freq"]
    assert (reading.min_hz, reading.max_hz) == (1300500000, 1300500000)
    root.writes.clear()
    gpu.pin(100_000_000)
    assert [w[0].rsplit("/", 1)[1] for w in root.writes] == ["min_freq", "max_freq"]


def test_userspace_mode_and_restore(tmp_path):
    root = _tree(tmp_path)
    files = (f"{REAL}/min_freq", f"{REAL}/max_freq", f"{REAL}/governor")
    before = {rel: (tmp_path / rel).read_bytes() for rel in files}
    gpu = Devfreq(root, _spec(), mode="userspace")
    gpu.probe()
    baseline = gpu.snapshot()
    gpu.pin(522_750_000)
    assert root.read(f"{REAL}/governor") == "userspace" and root.read(f"{REAL}/userspace/set_freq") == "522750000"
    gpu.restore(baseline)
    assert {rel: (tmp_path / rel).read_bytes() for rel in before} == before


def test_table_is_read_when_the_catalogue_has_none(tmp_path):
    gpu = Devfreq(_tree(tmp_path), _spec(table=()))
    gpu.probe()
    assert gpu.available_hz() == TABLE


def test_rail_gated_gpu_defers_and_absent_gpu_fails(tmp_path):
    build(tmp_path, {"sys/devices/gpu.0/load": "0", "sys/class/devfreq/.keep": ""})
    assert Devfreq(SysfsRoot(tmp_path), _spec()).probe().result is ProbeResult.DEFER
    probe = Devfreq(SysfsRoot(tmp_path), _spec(load_path="")).probe()
    assert probe.result is ProbeResult.FAIL and "gp10b" in probe.detail
