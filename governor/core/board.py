"""Board catalogue schema: what a board is, as data (``profiles/boards/<name>.toml``).

Theory of operation
-------------------
A board is described once, declaratively, and validated at load, before anything touches hardware.
The description says *what exists* (compute units, DVFS domains with their real frequency tables,
power rails, thermal zones) and *how to find it at run time* (glob patterns relative to the root
that stands in for ``/``, never fixed ``hwmonN`` numbers). Drivers resolve the patterns; the fake
trees in :mod:`governor.testing` build a tree that the same patterns resolve in.

Paths are relative to the root (``sys/...``, ``proc/...``), so one injectable root covers sysfs,
procfs and debugfs alike. Frequencies in tables are in the domain's native sysfs unit (``unit``):
kHz for cpufreq, Hz for devfreq and the Jetson EMC, MHz for the Odroid vendor Mali driver.
:meth:`Domain.table_hz` gives them in Hz, the unit the core works in.

This module is pure: it parses TOML *text*; reading files is the caller's job.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "SCHEMA_VERSION",
    "SIM_PREFIX",
    "BoardInfo",
    "BoardSpec",
    "CatalogueError",
    "ComputeUnit",
    "Domain",
    "Identify",
    "PowerDevice",
    "Rail",
    "ThermalZone",
    "parse_board",
    "profile_label",
    "sim_board_name",
]

SCHEMA_VERSION = 1

DomainKind = Literal["cpu", "gpu", "emc", "dla"]
FreqUnit = Literal["Hz", "kHz", "MHz"]
DomainDriver = Literal["cpufreq", "devfreq", "tegra-emc-bpmp", "tegra-emc-t210", "mali-vendor"]
PowerDriver = Literal["ina3221-iio", "ina3221-hwmon", "ina231", "ina2xx-hwmon", "rapl"]
LimitWrites = Literal["einval", "clamp"]

_UNIT_HZ: Mapping[str, int] = {"Hz": 1, "kHz": 1_000, "MHz": 1_000_000}


class CatalogueError(ValueError):
    """A catalogue file is malformed. The message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BoardInfo(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    family: Literal["jetson", "odroid", "host"]
    soc: str
    software: str = Field(description="the OS/kernel flavour this description was written for")
    # Old kernels (< 5.3) return EINVAL when a new min exceeds the current max; newer ones clamp.
    limit_writes: LimitWrites
    sources: tuple[str, ...] = ()
    notes: str = Field(default="", description="what is missing or unusual on this board (e.g. no power sensors)")


class Identify(_Strict):
    """How board detection recognises the board from the device tree."""

    compatible: tuple[str, ...] = Field(default=(), description="any of these in /proc/device-tree/compatible")
    model: tuple[str, ...] = Field(default=(), description="substrings of /proc/device-tree/model")
    model_example: str = Field(default="", description="a real model string, written into fake trees")
    compatible_example: tuple[str, ...] = Field(default=(), description="full compatible list for fake trees")


class Domain(_Strict):
    """One DVFS domain: a clock that software can set."""

    name: str
    kind: DomainKind
    driver: DomainDriver
    unit: FreqUnit
    # Glob patterns relative to the root, tried in order; for devfreq the class dir entries.
    paths: tuple[str, ...] = Field(min_length=1)
    # devfreq only: accept the entry whose device/of_node/name is one of these.
    of_node: tuple[str, ...] = ()
    # Where the node really lives on this board's kernel (fake trees put it there; symlinks point here).
    real_path: str = ""
    load_path: str = Field(default="", description="GPU load file (per-mille), relative to the root")
    table: tuple[int, ...] = Field(
        default=(), description="available frequencies, native unit, ascending ('' only for host: read at run time)"
    )
    volts_mv: tuple[float, ...] = Field(default=(), description="OPP voltage per table entry, mV")
    governors: tuple[str, ...] = ()
    default_governor: str = ""
    kernel_driver: str = Field(default="", description="the kernel's driver name (cpufreq scaling_driver)")
    notes: str = ""

    @field_validator("table")
    @classmethod
    def _ascending(cls, table: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in itertools.pairwise(table)):
            raise ValueError("frequency table must be strictly ascending")
        if table and table[0] <= 0:
            raise ValueError("frequencies must be positive")
        return table

    @model_validator(mode="after")
    def _consistent(self) -> Domain:
        if self.volts_mv and len(self.volts_mv) != len(self.table):
            raise ValueError(f"volts_mv has {len(self.volts_mv)} entries but table has {len(self.table)}")
        if self.default_governor and self.governors and self.default_governor not in self.governors:
            raise ValueError(f"default_governor {self.default_governor!r} is not in governors")
        return self

    @property
    def scale_hz(self) -> int:
        """Hz per native unit."""
        return _UNIT_HZ[self.unit]

    @property
    def table_hz(self) -> tuple[int, ...]:
        """The frequency table in Hz."""
        return tuple(f * self.scale_hz for f in self.table)


class ComputeUnit(_Strict):
    """Something a network can be mapped onto: a CPU cluster or an accelerator."""

    name: str
    kind: Literal["cpu", "gpu", "dla"]
    core: str
    cpus: tuple[int, ...] = Field(default=(), description="cpu numbers; empty on a cpu unit = all cpus (generic hosts)")
    domain: str = Field(default="", description="the DVFS domain clocking this unit ('' = not settable)")


class Rail(_Strict):
    """One channel of a power monitor. Channels are listed in chip order; an unconnected one keeps its
    place under the name ``NC``, as the kernel labels it (readers skip it; it is never in power_total)."""

    name: str
    supplies: tuple[str, ...] = Field(default=(), description="compute units/domains fed, or 'soc', 'ddr', 'io'")
    label: str = Field(default="", description="the kernel's name for the channel when not `name` (INA231 sensor_name)")

    @property
    def connected(self) -> bool:
        return "NC" not in (self.name.upper(), self.label.upper())


class PowerDevice(_Strict):
    """One power-monitor chip (or package) and the rails on its channels, in channel order."""

    driver: PowerDriver
    # Device directory glob; iio:device* / hwmon/hwmon* are globbed below it at run time.
    path: str
    real_path: str = ""
    channels: tuple[Rail, ...] = Field(min_length=1)
    update_interval_ms: float = Field(default=1.0, gt=0, description="how often the sensor refreshes")
    optional: bool = Field(default=False, description="absent on some machines of this kind; missing is no error")


class ThermalZone(_Strict):
    type: str = Field(description="content of thermal_zoneN/type")
    measures: str = Field(default="", description="compute unit or part it sits on (for the simulator)")
    passive_trip_c: float | None = Field(default=None, description="throttling starts here, °C")
    critical_trip_c: float | None = None
    disabled: bool = Field(default=False, description="reads -256 °C (Jetson: zone powered off)")


class BoardSpec(_Strict):
    schema_version: int
    board: BoardInfo
    identify: Identify = Identify()
    units: tuple[ComputeUnit, ...] = Field(min_length=1)
    domains: tuple[Domain, ...] = ()
    power: tuple[PowerDevice, ...] = ()
    power_total: tuple[str, ...] = Field(
        default=(), description="rails whose sum is board power (one input rail, or the sum of rails)"
    )
    thermal: tuple[ThermalZone, ...] = ()
    cpu_count: int = Field(default=0, ge=0, description="cpus present (0 = discover at run time)")
    hotplug_cpus: tuple[int, ...] = Field(default=(), description="cpus with an online file")
    # Generic hosts: enumerate cpufreq policies (and their tables) at run time instead of declaring them.
    discover_cpufreq: bool = False

    @model_validator(mode="after")
    def _references(self) -> BoardSpec:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"field 'schema_version': {self.schema_version} is not supported (this build reads {SCHEMA_VERSION})"
            )
        empty = [d.name for d in self.domains if not d.table]
        if empty and self.board.family != "host":
            raise ValueError(f"field 'domains': {empty} have no frequency table (only host boards may discover tables)")
        names = [d.name for d in self.domains]
        if len(set(names)) != len(names):
            raise ValueError(f"field 'domains': duplicate domain names in {names}")
        for i, unit in enumerate(self.units):
            if unit.domain and unit.domain not in names:
                raise ValueError(
                    f"field 'units.{i}.domain': unit {unit.name!r} names domain {unit.domain!r}, "
                    f"which is not declared (domains: {names})"
                )
        rail_names = [r.name for r in self.rails if r.connected]
        if len(set(rail_names)) != len(rail_names):
            raise ValueError(f"field 'power': duplicate rail names in {rail_names}")
        missing = [r for r in self.power_total if r not in rail_names]
        if missing:
            raise ValueError(f"field 'power_total': names rails that no power device has (or NC ones): {missing}")
        return self

    @property
    def name(self) -> str:
        return self.board.name

    def domain(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(f"board {self.name} has no domain {name!r}; it has {[d.name for d in self.domains]}")

    def unit(self, name: str) -> ComputeUnit:
        for u in self.units:
            if u.name == name:
                return u
        raise KeyError(f"board {self.name} has no compute unit {name!r}; it has {[u.name for u in self.units]}")

    @property
    def rails(self) -> tuple[Rail, ...]:
        return tuple(r for dev in self.power for r in dev.channels)


def parse_board(text: str, source: str) -> BoardSpec:
    """Parse and validate one catalogue file's TOML text. ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogueError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return BoardSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise CatalogueError(f"{source}: {problems}") from exc


def _describe(err: ErrorDetails) -> str:
    where = ".".join(str(p) for p in err["loc"])
    message = str(err["msg"])
    if where:
        return f"field '{where}': {message}"
    # Whole-model checks name their field inside the message.
    return message.removeprefix("Value error, ")


SIM_PREFIX = "sim:"  # --board sim:NAME is catalogue board NAME, simulated


def sim_board_name(name: str) -> str | None:
    """The catalogue name inside ``sim:<board>``, or None if ``name`` is not a simulated board."""
    return name[len(SIM_PREFIX):] if name.startswith(SIM_PREFIX) else None


def profile_label(name: str, simulated: bool) -> str:
    """The board as profiles name it (file names, the ``board`` field): ``sim-NAME`` when simulated, so a
    simulated profile is never taken for a measured one."""
    return f"sim-{name}" if simulated else name
