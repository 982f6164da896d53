"""The kernel side of a simulated board: read what the drivers wrote, publish what the kernel shows.

Theory of operation
-------------------
The simulator never talks to the drivers. Like a kernel, it reads the files they wrote
(:meth:`TreeBridge.read_controls`: cpufreq limits, governor and setspeed; devfreq limits, governor
and ``userspace/set_freq``; the EMC lock and rate (T210: the fake kernel's record); the Mali lock
pair; ``cpuK/online``) and writes
back through :meth:`FakeTree.set_file <governor.testing.FakeTree.set_file>`, which bypasses the
write semantics as the kernel's own updates do (:meth:`TreeBridge.publish`): current clocks,
rails, temperatures, ``proc/stat`` and the GPU ``load``.

Paths come from the same resolution the drivers use (catalogue globs, devfreq ``of_node``
matching), so a tree the drivers cannot find is one the simulator cannot drive either.

Thermal throttling is shown the way a 4.9 or freq-QoS kernel shows a cpufreq cooling device:
``scaling_max_freq`` reads the capped limit (and ``scaling_min_freq`` at most that), the
software's own limit is remembered and comes back when the cap lifts; a later write by software
replaces it. Devfreq, EMC and Mali caps show in their current clock only, as Tegra's GPU cooling
(below devfreq) does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from governor.core.board import BoardSpec, Domain
from governor.drivers._common import first_match, parse_int
from governor.drivers._sysfs import SysfsError
from governor.drivers.cpufreq import discover_policies, parse_cpu_list
from governor.drivers.devfreq import find_devfreq
from governor.drivers.hotplug import CPU_DIR
from governor.sim.dvfs import AUTO, DomainControl
from governor.sim.engine import Engine
from governor.sim.sensors import PowerPublisher, StatPublisher, ThermalPublisher, kernel_view

__all__ = ["TreeBridge", "discovered_spec"]


@dataclass
class _Limit:
    """A cpufreq limit file the kernel may clamp: what software asked and what we last printed."""

    asked: int
    shown: int


class _DomainFiles:
    """One domain's files: where they are and how to turn them into a :class:`DomainControl`."""

    def __init__(self, tree: object, domain: Domain) -> None:
        self.tree, self.spec, self.sysfs = tree, domain, kernel_view(tree)
        self.scale = domain.scale_hz
        self.dir = self._locate()
        self.limits: dict[str, _Limit] = {}
        self.control = DomainControl(governor=domain.default_governor)

    def _locate(self) -> str:
        if self.spec.driver == "devfreq":
            return find_devfreq(self.sysfs, self.spec) or ""
        return first_match(self.sysfs, self.spec.paths) or ""

    def f(self, leaf: str) -> str:
        return f"{self.dir}/{leaf}"

    def _int(self, leaf: str) -> int | None:
        try:
            return parse_int(self.sysfs.read(self.f(leaf)))
        except (SysfsError, ValueError, IndexError):
            return None

    def _text(self, leaf: str) -> str:
        try:
            return self.sysfs.read(self.f(leaf)).strip()
        except SysfsError:
            return ""

    def read(self) -> DomainControl:
        """The control the files hold now; the previous one if they cannot be read (all CPUs offline)."""
        if self.dir and not self.sysfs.exists(self.dir):
            self.dir = self._locate()  # the XU3's 3.10 kernel moves a policy when its first CPU goes offline
        if self.dir:
            reader: Callable[[], DomainControl | None] = getattr(self, f"_read_{self.spec.driver.replace('-', '_')}")
            self.control = reader() or self.control
        return self.control

    def _hz(self, native: int | None) -> float | None:
        return None if native is None else float(native * self.scale)

    def _asked(self, leaf: str) -> int | None:
        value = self._int(leaf)
        if value is None:
            return None
        limit = self.limits.get(leaf)
        if limit is None or value != limit.shown:
            self.limits[leaf] = _Limit(value, value)
        return self.limits[leaf].asked

    def _read_cpufreq(self) -> DomainControl | None:
        lo, hi = self._asked("scaling_min_freq"), self._asked("scaling_max_freq")
        if lo is None or hi is None:
            return None
        governor = self._text("scaling_governor")
        setspeed = self._int("scaling_setspeed") if governor == "userspace" else None
        return DomainControl(governor, self._hz(lo) or 0.0, self._hz(hi) or math.inf, self._hz(setspeed))

    def _read_devfreq(self) -> DomainControl | None:
        lo, hi = self._int("min_freq"), self._int("max_freq")
        if lo is None or hi is None:
            return None
        governor = self._text("governor")
        setspeed = self._int("userspace/set_freq") if governor == "userspace" else None
        return DomainControl(governor, self._hz(lo) or 0.0, self._hz(hi) or math.inf, self._hz(setspeed))

    def _read_tegra_emc_bpmp(self) -> DomainControl | None:
        if self._int("mrq_rate_locked") == 1:
            return DomainControl(pinned_hz=self._hz(self._int("rate")))
        return DomainControl(AUTO, self._hz(self._int("min_rate")) or 0.0, self._hz(self._int("max_rate")) or math.inf)

    def _read_tegra_emc_t210(self) -> DomainControl | None:
        if self._int("clk_state") == 1:
            return DomainControl(pinned_hz=self._hz(self._t210_rate()))
        return DomainControl(AUTO)

    def _t210_rate(self) -> int | None:
        """The override's requested rate. ``clk_update_rate`` reads the on/off state, not a rate (L4T
        clk.c), so the kernel keeps the rate itself: here the fake tree's rule; else ``clk_rate``."""
        state = getattr(getattr(self.tree, "sysfs", None), "state", None)
        rule = state.get("nodes", {}).get(self.dir, {}) if isinstance(state, dict) else {}
        return int(rule["rate"]) if "rate" in rule else self._int("clk_rate")

    def _read_mali_vendor(self) -> DomainControl | None:
        lo, hi = self._int("dvfs_min_lock"), self._int("dvfs_max_lock")
        on = self._text("dvfs") not in ("0", "off")
        lo_hz = self._hz(lo) if lo and lo > 0 else 0.0
        hi_hz = self._hz(hi) if hi and hi > 0 else math.inf
        if not on:
            return DomainControl(pinned_hz=self._hz(self._int("clock")), min_hz=lo_hz or 0.0, max_hz=hi_hz or math.inf)
        return DomainControl(AUTO, lo_hz or 0.0, hi_hz or math.inf)

    # ---- publishing ------------------------------------------------------------------------------
    def publish(self, hz: float, cap_hz: float) -> None:
        if not self.dir or hz <= 0:
            return
        native = round(hz / self.scale)
        leaves = {"cpufreq": ("scaling_cur_freq", "cpuinfo_cur_freq"), "devfreq": ("cur_freq", "target_freq"),
                  "tegra-emc-bpmp": ("rate",), "tegra-emc-t210": ("clk_rate",), "mali-vendor": ("clock",)}
        for leaf in leaves[self.spec.driver]:
            if leaf == "rate" and self._int("mrq_rate_locked") == 1:
                continue
            self._set(leaf, str(native))
        if self.spec.driver == "cpufreq":
            self._show_cap(cap_hz)

    def _show_cap(self, cap_hz: float) -> None:
        if "scaling_max_freq" not in self.limits or "scaling_min_freq" not in self.limits:
            return
        # A limit software wrote since the controls were last read is its new request: take it in before
        # printing the capped value, or this print would overwrite the write with the old request.
        self._asked("scaling_max_freq")
        self._asked("scaling_min_freq")
        hi, lo = self.limits["scaling_max_freq"], self.limits["scaling_min_freq"]
        cap = hi.asked if math.isinf(cap_hz) else min(hi.asked, round(cap_hz / self.scale))
        hi.shown, lo.shown = cap, min(lo.asked, cap)
        self._set("scaling_max_freq", str(hi.shown))
        self._set("scaling_min_freq", str(lo.shown))

    def _set(self, leaf: str, text: str) -> None:
        rel = self.f(leaf)
        if self.sysfs.exists(rel) and self._text(leaf) != text:
            self.tree.set_file(rel, text + "\n")  # type: ignore[attr-defined]


def discovered_spec(spec: BoardSpec, tree: object) -> tuple[BoardSpec, dict[str, tuple[int, ...]]]:
    """A host's spec with the cpufreq policies found in its tree, and each policy's CPUs.

    Boards that declare their domains come back unchanged (CPUs from their units). A host's
    CPU unit without CPUs or domain spans every CPU found, clocked by the policies it covers.
    """
    if not spec.discover_cpufreq:
        return spec, {u.domain: tuple(u.cpus) for u in spec.units if u.kind == "cpu" and u.domain and u.cpus}
    sysfs = kernel_view(tree)
    found: list[Domain] = []
    cpus_of: dict[str, tuple[int, ...]] = {}
    for domain in discover_policies(sysfs):
        where = domain.paths[0]
        listed = f"{where}/scaling_available_frequencies"
        if sysfs.exists(listed):
            table = tuple(sorted({int(v) for v in sysfs.read_list(listed)}))
        else:
            lo, hi = sysfs.read_int(f"{where}/cpuinfo_min_freq"), sysfs.read_int(f"{where}/cpuinfo_max_freq")
            table = tuple(sorted({lo, *range(-(-lo // 100_000) * 100_000, hi + 1, 100_000), hi}))
        found.append(domain.model_copy(update={"table": table}))
        cpus_of[domain.name] = parse_cpu_list(sysfs.read(f"{where}/related_cpus"))
    every = tuple(sorted({c for cpus in cpus_of.values() for c in cpus}))
    units = tuple(
        u.model_copy(update={"cpus": every, "domain": found[0].name}) if u.kind == "cpu" and not u.cpus and found else u
        for u in spec.units
    )
    update = {"domains": (*spec.domains, *found), "units": units, "cpu_count": spec.cpu_count or len(every)}
    return spec.model_copy(update=update), cpus_of


class TreeBridge:
    """Reads controls from and publishes state into one fake tree for one :class:`Engine`."""

    def __init__(self, tree: object, spec: BoardSpec, engine: Engine, *, seed: int) -> None:
        self.tree, self.spec, self.engine = tree, spec, engine
        self.sysfs = kernel_view(tree)
        self.domains = {d.name: _DomainFiles(tree, d) for d in spec.domains if d.table}
        self.power = [PowerPublisher(tree, dev, spec, seed=seed + i) for i, dev in enumerate(spec.power)]
        self.thermal = ThermalPublisher(tree, spec, seed=seed + 101)
        self.stat = StatPublisher(tree, spec)

    def read_controls(self) -> None:
        """Hand the engine what the files ask for now (limits, governors, locks, online CPUs)."""
        self.engine.controls = {name: files.read() for name, files in self.domains.items()}
        self.engine.online = frozenset(self._online())

    def _online(self) -> set[int]:
        cpus = set(range(self.spec.cpu_count)) or {c for u in self.spec.units for c in u.cpus}
        for cpu in self.spec.hotplug_cpus:
            try:
                if parse_int(self.sysfs.read(f"{CPU_DIR}/cpu{cpu}/online")) == 0:
                    cpus.discard(cpu)
            except (SysfsError, ValueError, IndexError):
                continue
        return cpus

    def publish(self) -> None:
        """Write what the kernel would show at the engine's current time."""
        truth = self.engine.truth()
        for name, files in self.domains.items():
            files.publish(truth.freqs_hz.get(name, 0.0), truth.caps_hz.get(name, math.inf))
        for sensor in self.power:
            sensor.publish(self.engine)
        self.thermal.publish(self.engine)
        self.stat.publish(self.engine)
