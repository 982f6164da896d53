"""Sensors: power monitors in each driver's own layout and units, and thermal zones.

=================  =========================================================  ==================
driver             files (below the i2c device dir)                           units
=================  =========================================================  ==================
``ina3221-iio``    ``iio:deviceK/{rail_name_N,in_power/current/voltageN_input}``  mW, mA, mV
``ina3221-hwmon``  ``hwmon/hwmonN/{inN_label,inN_input,currN_input}``; no power  mV, mA
``ina231``         ``sensor_{W,A,V}`` ``"%d.%06d"``, ``enable`` (0 at boot)     W, A, V
``ina2xx-hwmon``   ``hwmon/hwmonN/{power1_input,curr1_input,in1_input}``        µW, mA, mV
``rapl``           ``energy_uj`` (root only), ``max_energy_range_uj``           µJ
=================  =========================================================  ==================

``hwmonN`` numbers start at ``hwmon_base`` so drivers cannot hard-code them. Readings are an idle
board's, jittered by the seed; the simulator replaces them. Thermal zones are numbered in
catalogue order, in m°C. A powered-off (``disabled``) zone reads -256000 up to JetPack 5; from
JetPack 6 (L4T R36) reading its ``temp`` fails with EAGAIN (real R36.4.7 boards list only the zones
that read; docs/boards.md, issue 21 sources), kept in the marker's ``read_errors``.
"""

from __future__ import annotations

import errno
import glob
import re
from posixpath import basename

from governor.core.board import PowerDevice, Rail, ThermalZone
from governor.testing._build import BuildContext, write_all
from governor.testing._fs import ROOT_ONLY

__all__ = ["build_power", "build_thermal", "idle_reading", "offline_read_errno"]

_IDLE_MW = {"board": 2600, "soc": 700, "ddr": 250, "io": 120, "cv": 0, "pmic": 0}
_UNIT_IDLE_MW = {"cpu": 180, "gpu": 150, "dla": 0}
_SHUNT_MOHM = 5
THERMAL_DIR = "sys/devices/virtual/thermal"


def idle_reading(ctx: BuildContext, rail: Rail) -> tuple[int, int]:
    """An idle rail's (bus mV, mA), deterministic for the tree's seed."""
    if not rail.connected:
        return 0, 0
    kinds = {u.name: u.kind for u in ctx.spec.units}
    mw = sum(_IDLE_MW.get(s, _UNIT_IDLE_MW.get(kinds.get(s, ""), 100)) for s in rail.supplies) or 300
    mw = round(mw * ctx.rng.uniform(0.95, 1.05))
    if ctx.spec.board.family == "odroid":
        mv = 1200 if "MEM" in rail.name.upper() else 1000
    else:
        mv = 1800 if "1V8" in rail.name.upper() else 5000
    mv += ctx.rng.randint(-8, 8)
    return mv, round(mw * 1000 / mv)


def build_power(ctx: BuildContext) -> None:
    builders = {"ina3221-iio": _iio, "ina3221-hwmon": _hwmon, "ina231": _ina231, "ina2xx-hwmon": _ina2xx, "rapl": _rapl}
    counters = {"iio": 0, "hwmon": ctx.hwmon_base}
    for dev in ctx.spec.power:
        real = dev.real_path or dev.path
        if glob.has_magic(real):
            raise ValueError(f"power device {dev.path!r} is a pattern; give real_path for fake trees")
        builders[dev.driver](ctx, dev, real, counters)
        if dev.path != real:
            ctx.files.link(dev.path, real)
        if dev.driver != "rapl":
            ctx.files.link(f"sys/bus/i2c/devices/{basename(real)}", real)


def _iio(ctx: BuildContext, dev: PowerDevice, real: str, counters: dict[str, int]) -> None:
    iio = f"iio:device{counters['iio']}"
    counters["iio"] += 1
    ro: dict[str, object] = {"name": "ina3221x"}
    rw: dict[str, object] = {}
    for ch, rail in enumerate(dev.channels):
        mv, ma = idle_reading(ctx, rail)
        ro |= {
            f"rail_name_{ch}": rail.label or rail.name,
            f"in_power{ch}_input": mv * ma // 1000,
            f"in_current{ch}_input": ma,
            f"in_voltage{ch}_input": mv,
        }
        rw |= {f"warn_current_limit_{ch}": 3000, f"crit_current_limit_{ch}": 4000}
    write_all(ctx.files, f"{real}/{iio}", ro, rw)
    write_all(ctx.files, real, {"name": "ina3221x"})
    ctx.files.link(f"sys/bus/iio/devices/{iio}", f"{real}/{iio}")


def _next_hwmon(ctx: BuildContext, real: str, counters: dict[str, int], name: str) -> str:
    hwmon = f"{real}/hwmon/hwmon{counters['hwmon']}"
    ctx.files.link(f"sys/class/hwmon/hwmon{counters['hwmon']}", hwmon)
    counters["hwmon"] += 1
    ctx.files.link(f"{hwmon}/device", real)
    write_all(ctx.files, hwmon, {"name": name})
    write_all(ctx.files, real, {"name": name})
    return hwmon


def _hwmon(ctx: BuildContext, dev: PowerDevice, real: str, counters: dict[str, int]) -> None:
    """Upstream ina3221: labels and bus mV / mA per channel, shunt µV as in4..6, sum channel 7."""
    hwmon = _next_hwmon(ctx, real, counters, "ina3221")
    ro: dict[str, object] = {"in7_label": "sum of shunt voltages"}
    rw: dict[str, object] = {"samples": 4, "update_interval": max(1, round(dev.update_interval_ms)), "curr4_crit": 0}
    total_ma = 0
    for ch, rail in enumerate(dev.channels, start=1):
        mv, ma = idle_reading(ctx, rail)
        total_ma += ma
        ro |= {
            f"in{ch}_label": rail.label or rail.name,
            f"in{ch}_input": mv,
            f"curr{ch}_input": ma,
            f"in{ch + 3}_input": ma * _SHUNT_MOHM,
        }
        rw |= {
            f"in{ch}_enable": 1,
            f"curr{ch}_max": 3000,
            f"curr{ch}_crit": 4000,
            f"shunt{ch}_resistor": _SHUNT_MOHM * 1000,
        }
    ro |= {"in7_input": total_ma * _SHUNT_MOHM, "curr4_input": total_ma}
    write_all(ctx.files, hwmon, ro, rw)


def _ina231(ctx: BuildContext, dev: PowerDevice, real: str, counters: dict[str, int]) -> None:
    """Hardkernel's driver: zero readings until ``enable`` = 1 starts the conversion timer."""
    rail = dev.channels[0]
    mv, ma = idle_reading(ctx, rail)
    zero = "0.000000\n"
    ro = {"sensor_name": rail.label or rail.name, "update_period": f"{round(dev.update_interval_ms * 1000)} usec"}
    ro |= {leaf: zero for leaf in ("sensor_W", "sensor_A", "sensor_V", "sensor_maxW", "sensor_maxA", "sensor_maxV")}
    write_all(ctx.files, real, {**ro, "name": "INA231"}, {"enable": 0})
    ctx.rule_file(f"{real}/enable", kind="ina231-enable", uw=mv * ma, ua=ma * 1000, uv=mv * 1000)


def _ina2xx(ctx: BuildContext, dev: PowerDevice, real: str, counters: dict[str, int]) -> None:
    hwmon = _next_hwmon(ctx, real, counters, "ina231")
    mv, ma = idle_reading(ctx, dev.channels[0])
    ro = {"in0_input": ma * 10 // 1000, "in1_input": mv, "curr1_input": ma, "power1_input": mv * ma}
    rw = {"shunt_resistor": 10000, "update_interval": max(2, round(dev.update_interval_ms))}
    write_all(ctx.files, hwmon, ro, rw)


def _rapl(ctx: BuildContext, dev: PowerDevice, real: str, counters: dict[str, int]) -> None:
    rail = dev.channels[0]
    ro = {"name": rail.label or rail.name, "max_energy_range_uj": 262143328850, "constraint_0_name": "long_term"}
    rw = {"enabled": 1, "constraint_0_power_limit_uw": 15000000, "constraint_0_time_window_us": 27983872}
    write_all(ctx.files, real, ro, rw)
    energy = ctx.rng.randint(10**9, 10**11)
    ctx.files.write(f"{real}/energy_uj", f"{energy}\n", ROOT_ONLY, atomic=False)


def zone_temp_mc(ctx: BuildContext, zone: ThermalZone) -> int:
    if zone.disabled:
        return -256000
    if zone.type == "PMIC-Die":
        return 100000  # Jetson PMICs report a constant 100 °C (jtop skips the zone)
    step = 500 if ctx.spec.board.family == "jetson" else 1000
    return round(ctx.rng.uniform(34000, 42000) / step) * step


def offline_read_errno(ctx: BuildContext) -> int | None:
    """EAGAIN when the board's L4T release (R36+, JetPack 6) fails reads of powered-off zones, else None."""
    release = re.search(r"\bR(\d+)", ctx.spec.board.software)
    return errno.EAGAIN if ctx.spec.board.family == "jetson" and release and int(release[1]) >= 36 else None


def build_thermal(ctx: BuildContext) -> None:
    offline_errno = offline_read_errno(ctx)
    for i, zone in enumerate(ctx.spec.thermal):
        d = f"{THERMAL_DIR}/thermal_zone{i}"
        if zone.disabled and offline_errno is not None:
            ctx.state.setdefault("read_errors", {})[f"{d}/temp"] = offline_errno
        ro: dict[str, object] = {
            "type": zone.type,
            "temp": zone_temp_mc(ctx, zone),
            "available_policies": "step_wise user_space",
        }
        marks = (("passive", zone.passive_trip_c), ("critical", zone.critical_trip_c))
        trips = [(kind, c) for kind, c in marks if c]
        for k, (kind, celsius) in enumerate(trips):
            ro |= {
                f"trip_point_{k}_type": kind,
                f"trip_point_{k}_temp": round(celsius * 1000),
                f"trip_point_{k}_hyst": 0,
            }
        write_all(ctx.files, d, ro, {"mode": "disabled" if zone.disabled else "enabled", "policy": "step_wise"})
        ctx.files.link(f"sys/class/thermal/thermal_zone{i}", d)
