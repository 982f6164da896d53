"""Simulated sensors: power monitors, thermal zones, ``proc/stat`` and GPU load, at their real rates.

Theory of operation
-------------------
A power monitor refreshes once per conversion period (INA3221: the catalogue's ~1 ms or hwmon's
``update_interval``; Hardkernel INA231: ``update_period`` = 263808 µs) and then shows the mean
power since its previous refresh, from the engine's energy counters, plus seeded Gaussian noise
(relative gain error and an absolute offset per chip family) quantised to the chip's printed
resolution. Between refreshes the files keep their value, exactly as re-reading a real sensor
faster than it converts returns the same number. Temperatures refresh every 100 ms, quantised
to the zone's step with a little noise; ``proc/stat`` counts jiffies (USER_HZ = 100) per online CPU from the busy
time the engine accounted, and the GPU ``load`` file holds per-mille of the last interval.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass

from governor.core.board import BoardSpec, PowerDevice
from governor.drivers._common import first_match, parse_int
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.thermal import DISABLED_C, ZONE_GLOBS
from governor.sim.engine import Engine

__all__ = ["NOISE", "Noise", "PowerPublisher", "StatPublisher", "ThermalPublisher", "kernel_view"]

USER_HZ = 100
THERMAL_PERIOD_S = 0.1  # zones are re-read at most this often (Tegra soctherm and Exynos TMU sample at ~10 Hz)


@dataclass(frozen=True)
class Noise:
    """Sensor error: relative sigma (gain), absolute sigma in mW (offset), printed step in mW."""

    rel: float
    abs_mw: float
    step_mw: float


# INA3221: 0.25 % gain error, a few LSBs of shunt offset; INA231 averages 16 samples (quieter).
NOISE = {
    "ina3221-iio": Noise(0.005, 8.0, 1.0),
    "ina3221-hwmon": Noise(0.005, 8.0, 0.0),
    "ina231": Noise(0.002, 2.0, 0.001),
    "ina2xx-hwmon": Noise(0.002, 2.0, 0.001),
    "rapl": Noise(0.001, 0.0, 0.0),
}


def kernel_view(tree: object) -> SysfsRoot:
    """The tree as the kernel sees it: plain reads, no injected faults or write rules in the way."""
    return SysfsRoot(tree.root)  # type: ignore[attr-defined]


def _noisy(rng: random.Random, mw: float, noise: Noise) -> float:
    value = mw * (1.0 + rng.gauss(0.0, noise.rel)) + rng.gauss(0.0, noise.abs_mw)
    value = max(value, 0.0)
    return round(value / noise.step_mw) * noise.step_mw if noise.step_mw else value


class PowerPublisher:
    """One power-monitor chip of the catalogue, refreshed at its conversion period."""

    def __init__(self, tree: object, device: PowerDevice, spec: BoardSpec, *, seed: int) -> None:
        self.tree, self.device = tree, device
        self.sysfs = kernel_view(tree)
        self.rng = random.Random(seed)
        self.noise = NOISE[device.driver]
        self.dir = first_match(self.sysfs, [device.path]) or ""
        self.period_s = device.update_interval_ms / 1000
        self.inner = self._inner_dir()
        self._read_period()
        self.last_t: float | None = None
        self.due_t: float | None = None
        self.last_mj: dict[str, float] = {}
        self.volts_mv = {rail.name: self._bus_mv(i) for i, rail in enumerate(device.channels)}

    def _inner_dir(self) -> str:
        pattern = {"ina3221-iio": "iio[:_]device*", "ina3221-hwmon": "hwmon/hwmon*", "ina2xx-hwmon": "hwmon/hwmon*"}
        glob = pattern.get(self.device.driver)
        if not self.dir or not glob:
            return self.dir
        return first_match(self.sysfs, [f"{self.dir}/{glob}"]) or self.dir

    def _read_period(self) -> None:
        for leaf, scale in (("update_interval", 1e-3), ("update_period", 1e-6)):
            rel = f"{self.inner}/{leaf}"
            if self.dir and self.sysfs.exists(rel):
                with contextlib.suppress(SysfsError, ValueError, IndexError):
                    self.period_s = parse_int(self.sysfs.read(rel)) * scale

    def _files(self, idx: int) -> dict[str, str]:
        d = self.inner
        return {
            "ina3221-iio": {"mw": f"{d}/in_power{idx}_input", "ma": f"{d}/in_current{idx}_input",
                            "mv": f"{d}/in_voltage{idx}_input"},
            "ina3221-hwmon": {"mv": f"{d}/in{idx + 1}_input", "ma": f"{d}/curr{idx + 1}_input"},
            "ina231": {"w": f"{d}/sensor_W", "a": f"{d}/sensor_A", "v": f"{d}/sensor_V"},
            "ina2xx-hwmon": {"uw": f"{d}/power1_input", "ma": f"{d}/curr1_input", "mv": f"{d}/in1_input"},
            "rapl": {"uj": f"{d}/energy_uj"},
        }[self.device.driver]

    def _bus_mv(self, idx: int) -> float:
        files = self._files(idx)
        for key, scale in (("mv", 1.0), ("v", 1000.0)):
            rel = files.get(key)
            if rel and self.sysfs.exists(rel):
                try:
                    value = float(self.sysfs.read(rel).strip()) * scale
                    if value > 0:
                        return value
                except (SysfsError, ValueError):
                    pass
        return 5000.0

    def publish(self, engine: Engine) -> None:
        """Refresh the files if a conversion period has ended since the last refresh."""
        t = engine.t
        if not self.dir or (self.due_t is not None and t < self.due_t - 1e-9):
            return
        now = engine.truth().rails_mw
        for idx, rail in enumerate(self.device.channels):
            if rail.name not in now:
                continue
            energy = engine.energy_mj.get(rail.name, 0.0)
            span = t - self.last_t if self.last_t is not None else 0.0
            # The chip averages over its last conversion window: over a longer gap that is the latest
            # engine step (constant power), over a shorter one the mean since the last refresh.
            recent = 0 < span <= 2 * self.period_s
            mean = (energy - self.last_mj.get(rail.name, 0.0)) / span if recent else now[rail.name]
            self._write(idx, rail.name, _noisy(self.rng, mean, self.noise), energy)
            self.last_mj[rail.name] = energy
        self.last_t = t
        # The next refresh stays on the chip's own grid of conversion instants.
        due = self.due_t if self.due_t is not None else t
        self.due_t = due + self.period_s * (math.floor((t - due) / self.period_s + 1e-9) + 1)

    def _write(self, idx: int, rail: str, mw: float, energy_mj: float) -> None:
        files, mv = self._files(idx), self.volts_mv[rail]
        values = {"mw": f"{round(mw)}", "ma": f"{round(mw * 1000 / mv)}",
                  "w": _decimal(mw / 1000), "a": _decimal(mw / mv),
                  "uw": f"{round(mw * 1000)}", "uj": f"{round(energy_mj * 1000)}"}
        for key, rel in files.items():
            # The bus voltage stays what the tree was built with; only power and current move.
            if key not in ("mv", "v") and self.sysfs.exists(rel):
                self.tree.set_file(rel, values[key] + "\n")  # type: ignore[attr-defined]


def _decimal(value: float) -> str:
    """Hardkernel's ``"%d.%06d"`` text of a non-negative value."""
    micro = round(max(value, 0.0) * 1e6)
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}"


class ThermalPublisher:
    """Every enabled zone's ``temp`` in m°C, quantised (Tegra 0.5 °C, others 1 °C), with noise."""

    def __init__(self, tree: object, spec: BoardSpec, *, seed: int) -> None:
        self.tree, self.sysfs = tree, kernel_view(tree)
        self.rng = random.Random(seed)
        self.step_mc = 500 if spec.board.family == "jetson" else 1000
        self.due_t = -math.inf
        enabled = {z.type for z in spec.thermal if not z.disabled}
        self.zones: dict[str, str] = {}
        for pattern in ZONE_GLOBS:
            for zone in self.sysfs.glob(pattern):
                kind = self._type(zone)
                if kind in enabled and kind not in self.zones:
                    self.zones[kind] = zone

    def _type(self, zone: str) -> str:
        try:
            return self.sysfs.read(f"{zone}/type").strip()
        except SysfsError:
            return ""

    def publish(self, engine: Engine) -> None:
        if engine.t < self.due_t - 1e-9:
            return
        self.due_t = engine.t + THERMAL_PERIOD_S
        for kind, zone in self.zones.items():
            celsius = engine.zone_temp(kind) + self.rng.gauss(0.0, 0.15)
            milli = round(celsius * 1000 / self.step_mc) * self.step_mc
            if celsius > DISABLED_C:
                self.tree.set_file(f"{zone}/temp", f"{milli}\n")  # type: ignore[attr-defined]


class StatPublisher:
    """``proc/stat`` per online CPU from the engine's busy time, and each GPU ``load`` file (per-mille)."""

    def __init__(self, tree: object, spec: BoardSpec) -> None:
        self.tree, self.spec, self.sysfs = tree, spec, kernel_view(tree)
        self.base: dict[str, list[int]] = {}
        self.tail: list[str] = []
        try:
            text = self.sysfs.read("proc/stat")
        except SysfsError:
            text = ""
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[0].startswith("cpu") and fields[0] != "cpu":
                self.base[fields[0]] = [int(v) for v in fields[1:11]] + [0] * (10 - len(fields[1:11]))
            elif fields and fields[0] != "cpu":
                self.tail.append(line)
        self.has_stat = bool(text)
        # nvgpu's load is per-mille, the Mali vendor driver's utilization (beside its clock) a percent
        self.loads = [(d.name, d.load_path, 1000) for d in spec.domains if d.load_path]
        self.loads += [(d.name, f"{d.paths[0]}/utilization", 100) for d in spec.domains if d.driver == "mali-vendor"]

    def publish(self, engine: Engine) -> None:
        if self.has_stat:
            self.tree.set_file("proc/stat", self._stat(engine))  # type: ignore[attr-defined]
        for domain, rel, scale in self.loads:
            if self.sysfs.exists(rel):
                self.tree.set_file(rel, f"{round(engine.util.get(domain, 0.0) * scale)}\n")  # type: ignore[attr-defined]

    def _stat(self, engine: Engine) -> str:
        lines, total = [], [0] * 10
        for cpu in sorted(engine.online):
            fields = list(self.base.get(f"cpu{cpu}", [0] * 10))
            busy = round(engine.busy_s.get(cpu, 0.0) * USER_HZ)
            up = round(engine.up_s.get(cpu, 0.0) * USER_HZ)
            fields[0] += busy - busy // 10  # user
            fields[2] += busy // 10  # system
            fields[3] += max(up - busy, 0)  # idle
            total = [a + b for a, b in zip(total, fields, strict=True)]
            lines.append(f"cpu{cpu} " + " ".join(map(str, fields)))
        head = "cpu  " + " ".join(map(str, total))
        return "\n".join([head, *lines, *self.tail]) + "\n"
