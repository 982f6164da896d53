"""cpufreq policies on hand-built trees: units, snapping, write order, userspace mode, discovery."""

from __future__ import annotations

import pytest
from drivers_handmade import OldKernelRoot, build

from governor.core.board import Domain
from governor.drivers._sysfs import SysfsRejected, SysfsRoot
from governor.drivers.base import ProbeResult
from governor.drivers.cpufreq import CpufreqPolicy, discover_policies, parse_cpu_list

POLICY = "sys/devices/system/cpu/cpufreq/policy0"
TABLE = (345600, 652800, 960000, 1267200, 2035200)


def _policy_files(cur: int = 960000, lo: int = 345600, hi: int = 2035200, governor: str = "schedutil") -> dict:
    return {
        f"{POLICY}/scaling_cur_freq": str(cur),
        f"{POLICY}/scaling_min_freq": str(lo),
        f"{POLICY}/scaling_max_freq": str(hi),
        f"{POLICY}/cpuinfo_min_freq": "345600",
        f"{POLICY}/cpuinfo_max_freq": "2035200",
        f"{POLICY}/scaling_governor": governor,
        f"{POLICY}/scaling_available_governors": "userspace schedutil performance",
        f"{POLICY}/scaling_setspeed": "<unsupported>",
        f"{POLICY}/related_cpus": "0 3 4 5",
    }


def _spec(table: tuple[int, ...] = TABLE) -> Domain:
    return Domain(name="cpu-a57", kind="cpu", driver="cpufreq", unit="kHz", paths=(POLICY,), table=table)


def _old_kernel(tmp_path, **files) -> OldKernelRoot:
    build(tmp_path, _policy_files(**files))
    return OldKernelRoot(tmp_path, {f"{POLICY}/scaling_min_freq": f"{POLICY}/scaling_max_freq"})


def test_reading_is_in_hz(tmp_path):
    build(tmp_path, _policy_files())
    policy = CpufreqPolicy(SysfsRoot(tmp_path), _spec())
    assert policy.probe().result is ProbeResult.SUCCESS
    reading = policy.read()
    assert (reading.cur_hz, reading.min_hz, reading.max_hz) == (960_000_000, 345_600_000, 2_035_200_000)
    assert reading.governor == "schedutil"
    assert policy.available_hz()[0] == 345_600_000
    assert policy.cpus() == (0, 3, 4, 5)


def test_raising_writes_max_first_and_lowering_writes_min_first(tmp_path):
    root = _old_kernel(tmp_path, lo=345600, hi=652800)
    policy = CpufreqPolicy(root, _spec())
    policy.pin(2_035_200_000)
    assert [rel.rsplit("/", 1)[1] for rel, _ in root.writes] == ["scaling_max_freq", "scaling_min_freq"]
    root.writes.clear()
    policy.pin(345_600_000)
    assert [rel.rsplit("/", 1)[1] for rel, _ in root.writes] == ["scaling_min_freq", "scaling_max_freq"]
    assert root.read(f"{POLICY}/scaling_min_freq") == root.read(f"{POLICY}/scaling_max_freq") == "345600"


def test_the_wrong_order_is_what_an_old_kernel_rejects(tmp_path):
    root = _old_kernel(tmp_path, lo=345600, hi=652800)
    with pytest.raises(SysfsRejected, match="Invalid argument"):
        root.write(f"{POLICY}/scaling_min_freq", 2035200)


def test_pin_snaps_to_the_nearest_table_entry(tmp_path):
    root = _old_kernel(tmp_path)
    policy = CpufreqPolicy(root, _spec())
    policy.pin(1_000_000_000)
    assert root.read(f"{POLICY}/scaling_max_freq") == "960000"


def test_set_range_keeps_the_governor_and_rejects_inverted_ranges(tmp_path):
    root = _old_kernel(tmp_path)
    policy = CpufreqPolicy(root, _spec())
    policy.set_range(652_800_000, 1_267_200_000)
    assert (root.read(f"{POLICY}/scaling_min_freq"), root.read(f"{POLICY}/scaling_max_freq")) == ("652800", "1267200")
    with pytest.raises(ValueError, match="above max"):
        policy.set_range(2_000_000_000, 400_000_000)


def test_userspace_mode_widens_limits_and_uses_setspeed(tmp_path):
    root = _old_kernel(tmp_path, lo=960000, hi=960000)
    policy = CpufreqPolicy(root, _spec(), mode="userspace")
    assert "userspace" in policy.probe().detail
    policy.pin(652_800_000)
    assert root.read(f"{POLICY}/scaling_governor") == "userspace"
    assert root.read(f"{POLICY}/scaling_setspeed") == "652800"
    assert (root.read(f"{POLICY}/scaling_min_freq"), root.read(f"{POLICY}/scaling_max_freq")) == ("345600", "2035200")
    policy.set_range(345_600_000, 2_035_200_000)
    assert root.read(f"{POLICY}/scaling_governor") == "schedutil"


def test_userspace_mode_falls_back_to_limits_without_the_governor(tmp_path):
    files = _policy_files()
    files[f"{POLICY}/scaling_available_governors"] = "schedutil performance"
    build(tmp_path, files)
    policy = CpufreqPolicy(SysfsRoot(tmp_path), _spec(), mode="userspace")
    assert "pinning by limits" in policy.probe().detail
    assert policy.mode == "limits"


def test_restore_puts_back_exact_text_in_a_valid_order(tmp_path):
    root = _old_kernel(tmp_path, lo=345600, hi=652800)
    before = {rel: (tmp_path / rel).read_bytes() for rel in _policy_files()}
    policy = CpufreqPolicy(root, _spec(), mode="userspace")
    policy.probe()
    baseline = policy.snapshot()
    assert dict(baseline.files)[f"{POLICY}/scaling_max_freq"] == "652800\n"
    policy.pin(2_035_200_000)
    policy.restore(baseline)
    for rel in (f"{POLICY}/scaling_min_freq", f"{POLICY}/scaling_max_freq", f"{POLICY}/scaling_governor"):
        assert (tmp_path / rel).read_bytes() == before[rel]


def test_restore_refuses_someone_elses_baseline(tmp_path):
    build(tmp_path, _policy_files())
    policy = CpufreqPolicy(SysfsRoot(tmp_path), _spec())
    other = CpufreqPolicy(SysfsRoot(tmp_path), _spec().model_copy(update={"name": "cpu-denver"}))
    with pytest.raises(ValueError, match="cannot restore"):
        policy.restore(other.snapshot())


def test_host_table_comes_from_the_kernel_or_a_grid(tmp_path):
    files = _policy_files()
    files[f"{POLICY}/scaling_available_frequencies"] = "960000 345600 2035200"
    build(tmp_path, files)
    policy = CpufreqPolicy(SysfsRoot(tmp_path), _spec(table=()))
    policy.probe()
    assert policy.available_hz() == (345_600_000, 960_000_000, 2_035_200_000)
    (tmp_path / POLICY / "scaling_available_frequencies").unlink()
    pstate = CpufreqPolicy(SysfsRoot(tmp_path), _spec(table=()))
    pstate.probe()
    grid = pstate.available_hz()
    assert grid[0] == 345_600_000 and grid[1] == 400_000_000 and grid[-1] == 2_035_200_000


def test_policy_without_attributes_defers_and_missing_policy_fails(tmp_path):
    build(tmp_path, {f"{POLICY}/related_cpus": "4-7"})
    assert CpufreqPolicy(SysfsRoot(tmp_path), _spec()).probe().result is ProbeResult.DEFER
    missing = _spec().model_copy(update={"paths": ("sys/devices/system/cpu/cpufreq/policy9",)})
    assert CpufreqPolicy(SysfsRoot(tmp_path), missing).probe().result is ProbeResult.FAIL


def test_discover_policies_orders_numerically(tmp_path):
    for n in (0, 4, 10):
        build(tmp_path, {f"sys/devices/system/cpu/cpufreq/policy{n}/scaling_max_freq": "1"})
    names = [d.name for d in discover_policies(SysfsRoot(tmp_path))]
    assert names == ["cpu-policy0", "cpu-policy4", "cpu-policy10"]


@pytest.mark.parametrize(
    ("text", "cpus"), [("0-3", (0, 1, 2, 3)), ("0 3 4 5", (0, 3, 4, 5)), ("0-1,4-5\n", (0, 1, 4, 5))]
)
def test_parse_cpu_list(text, cpus):
    assert parse_cpu_list(text) == cpus


def test_old_layout_follows_the_policy_to_another_cpu_of_the_cluster(tmp_path):
    """3.10 kernels hang the policy under cpuK/cpufreq and move it when the owner CPU goes offline."""
    cpu4, cpu5 = "sys/devices/system/cpu/cpu4/cpufreq", "sys/devices/system/cpu/cpu5/cpufreq"
    files = {rel.replace(POLICY, cpu4): text for rel, text in _policy_files(lo=345600, hi=652800).items()}
    build(tmp_path, files)
    root = SysfsRoot(tmp_path)
    spec = _spec().model_copy(update={"paths": (cpu4,)})
    policy = CpufreqPolicy(root, spec, cpus=(4, 5, 6, 7))
    baseline = policy.snapshot()
    (tmp_path / cpu5).parent.mkdir(parents=True)
    (tmp_path / cpu4).rename(tmp_path / cpu5)
    assert policy.pin(2_035_200_000).max_hz == 2_035_200_000
    assert policy.dir == cpu5
    policy.restore(baseline)
    assert root.read(f"{cpu5}/scaling_max_freq") == "652800"
    assert CpufreqPolicy(root, spec).probe().result is ProbeResult.FAIL
