"""tegrastats lines -> frozen samples -> :class:`~governor.core.types.Observation` (the no-jtop fallback).

Theory of operation
-------------------
A tegrastats line is a run of self-describing tokens whose spelling changed across JetPack
releases (boards.md §5): ``RAM``/``SWAP``/``IRAM`` usage, ``CPU [pct%@MHz|off,...]``, engines
``NAME value`` (``EMC_FREQ 1%@800``, JP7 ``GR3D_FREQ 12%@[1300,1300]``, Thor ``GR3D_FREQ @[1000,...]``,
``APE 150``, ``NVENC off``), temperatures ``name@42.5C`` (-256C = off) and rails ``NAME cur/avg``
(JP4 bare mW, JP5+ ``5000mW/5000mW``, newest with a third field), after an optional timestamp.
The scanner tries one anchored pattern per token kind at each token; unknown tokens are kept
verbatim in ``extra`` (a new JetPack never crashes it); a line without RAM, CPU, EMC or GR3D is not
tegrastats (ValueError). Units: Hz, mW, °C, MB. :class:`SensorMapping` maps raw names onto the board
catalogue (total-power rails, CPU clusters, clock tables, zone types); the jtop backend shares it.

What real lines do (docs/boards.md, "Sources for tegrastats, rails and thermal zones"): clocks are
truncated MHz (``@76`` for 76.8 MHz), so a clock is snapped to the board's table and the snap is
said; ``@0`` / ``@[0,0]`` is a clock tegrastats could not read (GPU rail-gated), not 0 Hz; JetPack 5
prints the second GPC as ``GR3D2_FREQ``; AGX Orin prints two ``NC`` rails (kept as ``NC``, ``NC#2``);
a tegrastats not run as root prints no ``EMC_FREQ`` (and on old releases no ``GR3D``); JetPack 6/7
no longer print ``VDDQ_VDD2_1V8AO`` (:data:`UNPRINTED_RAILS`); zones are printed as ``CPU``/``cpu``
where sysfs says ``CPU-therm``/``cpu-thermal``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from governor.core.board import BoardSpec
from governor.core.types import Observation, frozen_map

__all__ = [
    "INPUT_RAILS",
    "UNPRINTED_RAILS",
    "ClockedEngine",
    "CpuCore",
    "Memory",
    "RailPower",
    "SensorMapping",
    "TegrastatsSample",
    "cluster_freqs_hz",
    "cluster_util",
    "parse_tegrastats",
    "read_tegrastats",
    "sample_freqs_hz",
    "snap_hz",
    "to_observation",
    "total_power_mw",
]

MHZ = 1_000_000
OFFLINE_C = -256.0  # Jetson thermal zones of powered-off parts read exactly this
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN")  # already the total (jetson-stats #51); VIN: Thor carrier
_MB = {"k": 1 / 1024, "M": 1.0, "G": 1024.0}
# Rails of a catalogue total that some tegrastats releases do not print, and why (a total without
# them is given, said to be partial, rather than none at all).
UNPRINTED_RAILS = {
    "VDDQ_VDD2_1V8AO": "AGX Orin DDR rail, not printed by JetPack 6/7 tegrastats (R36.4.4, R36.4.7, JP7 lines)",
}
_ZONE_SUFFIXES = ("-thermal", "-therm", "_tegra", "-fan-est", "-die")  # sysfs type = tegrastats name + one


@dataclass(frozen=True)
class Memory:
    """RAM, SWAP or IRAM usage in MB (IRAM is printed in kB; converted)."""

    used_mb: float
    total_mb: float
    lfb_blocks: int | None = None  # RAM: how many largest free blocks
    lfb_block_mb: float | None = None  # RAM, IRAM: size of the largest free block
    cached_mb: float | None = None  # SWAP only


@dataclass(frozen=True)
class CpuCore:
    """One core: load % of the current clock and the clock in Hz; both None when the core is off."""

    online: bool
    load_pct: float | None = None
    freq_hz: int | None = None


@dataclass(frozen=True)
class ClockedEngine:
    """A clocked engine (EMC, GR3D, APE, NVENC...): load %, clock(s) in Hz (one per GPC on JP7/Thor)."""

    on: bool = True
    load_pct: float | None = None
    freqs_hz: tuple[int, ...] = ()  # readings of 0 MHz are left out: tegrastats prints @0 when it read none
    clock_unread: bool = False  # a clock was printed, but only as @0 / @[0,0]

    @property
    def freq_hz(self) -> int | None:
        return max(self.freqs_hz) if self.freqs_hz else None


@dataclass(frozen=True)
class RailPower:
    """A rail in mW: current, tegrastats' average since it started, and the unlabelled third field."""

    cur_mw: float
    avg_mw: float
    third_mw: float | None = None


@dataclass(frozen=True)
class TegrastatsSample:
    """One tegrastats line. Offline temperature zones are listed in ``temps_off``, not in ``temps_c``."""

    timestamp: datetime | None = None
    ram: Memory | None = None
    swap: Memory | None = None
    iram: Memory | None = None
    cpus: tuple[CpuCore, ...] = ()
    emc: ClockedEngine | None = None
    gpu: ClockedEngine | None = None
    engines: Mapping[str, ClockedEngine] = field(default_factory=lambda: MappingProxyType({}))
    mts_fg_bg_pct: tuple[int, int] | None = None
    temps_c: Mapping[str, float] = field(default_factory=frozen_map)
    temps_off: tuple[str, ...] = ()
    rails: Mapping[str, RailPower] = field(default_factory=lambda: MappingProxyType({}))
    extra: tuple[str, ...] = ()  # tokens this parser does not know, verbatim


_END = r"(?=\s|$)"
_NUM = r"\d+(?:\.\d+)?"
_CLOCK = r"(?:\d+|\[\d+(?:,\d+)*\])"  # MHz, or one MHz per GPC
_CORE_ITEM = r"(?:off|\d+%(?:@\d+)?)"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(rf"\s*(?:{rx}){_END}"))
    for kind, rx in (
        ("time", r"(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)"),
        ("ram", r"RAM (\d+)/(\d+)([kMG])B(?: ?\(lfb (\d+)x(\d+)([kMG])B\))?"),
        ("swap", r"SWAP (\d+)/(\d+)([kMG])B(?: ?\(cached (\d+)([kMG])B\))?"),
        ("iram", r"IRAM (\d+)/(\d+)([kMG])B(?: ?\(lfb (\d+)([kMG])B\))?"),
        ("mts", r"MTS fg (\d+)% bg (\d+)%"),
        ("cpu", rf"(?i:CPU) \[({_CORE_ITEM}(?:,{_CORE_ITEM})*)\](?:@(\d+))?"),
        ("temp", rf"([A-Za-z][\w-]*)@(-?{_NUM})C(?:/-?{_NUM}C)?"),
        ("rail", rf"([A-Za-z][A-Za-z0-9_]*) ({_NUM})(?:mW)?/({_NUM})(?:mW)?(?:/({_NUM})(?:mW)?)?"),
        ("engine", rf"([A-Z][A-Z0-9_]*) (off|\d+|\d+%(?:@{_CLOCK})?|@{_CLOCK})"),
        ("extra", r"(\S+)"),  # anything else, kept verbatim
    )
)
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")


def _memory(m: re.Match[str], kind: str) -> Memory:
    used, total = float(m[1]) * _MB[m[3]], float(m[2]) * _MB[m[3]]
    if kind == "ram":
        return Memory(used, total, int(m[4]) if m[4] else None, int(m[5]) * _MB[m[6]] if m[4] else None)
    tail = int(m[4]) * _MB[m[5]] if m[4] else None
    return Memory(used, total, cached_mb=tail) if kind == "swap" else Memory(used, total, lfb_block_mb=tail)


def _cores(items: str, shared_mhz: str | None) -> tuple[CpuCore, ...]:
    """``pct%@MHz`` or ``off`` per core; old releases print ``pct%`` and one ``]@MHz`` for all."""
    cores = []
    for m in (_CORE.fullmatch(item) for item in items.split(",")):
        mhz = m and (m[2] or shared_mhz)
        cores.append(CpuCore(True, float(m[1]), int(mhz) * MHZ if mhz else None) if m else CpuCore(False))
    return tuple(cores)


def _engine(value: str) -> ClockedEngine:
    """``off``, ``150`` (clock only), ``1%`` (older EMC, load only), ``1%@800``, ``12%@[1300,1300]``, ``@[..]``."""
    if value == "off":
        return ClockedEngine(on=False)
    if value.isdigit():
        return ClockedEngine(True, None, (int(value) * MHZ,))
    load, _, clock = value.partition("@")
    mhz = [int(f) for f in clock.strip("[]").split(",")] if clock else []
    freqs = tuple(f * MHZ for f in mhz if f > 0)
    return ClockedEngine(True, float(load[:-1]) if load else None, freqs, clock_unread=bool(mhz) and not freqs)


def _second_gpc(gpu: ClockedEngine | None, gpc2: ClockedEngine) -> ClockedEngine:
    """JetPack 5's ``GR3D2_FREQ`` (second GPC) folded into the GPU: mean load, both clocks."""
    if gpu is None or not gpu.on:
        return gpc2
    if not gpc2.on:
        return gpu
    loads = [x for x in (gpu.load_pct, gpc2.load_pct) if x is not None]
    return ClockedEngine(True, sum(loads) / len(loads) if loads else None, gpu.freqs_hz + gpc2.freqs_hz,
                  gpu.clock_unread and gpc2.clock_unread)


def _apply(fields: dict[str, Any], kind: str, m: re.Match[str]) -> None:
    """Store one matched token into ``fields`` (lists and dicts until the sample is frozen)."""
    if kind == "time":
        try:
            fields["timestamp"] = datetime.strptime(m[1], "%m-%d-%Y %H:%M:%S")
        except ValueError:  # digits in the right shape but not a date
            fields["extra"].extend(m[1].split())
    elif kind == "extra":
        fields["extra"].append(m[1])
    elif kind in ("ram", "swap", "iram"):
        fields[kind] = _memory(m, kind)
    elif kind == "mts":
        fields["mts_fg_bg_pct"] = (int(m[1]), int(m[2]))
    elif kind == "cpu":
        fields["cpus"] = _cores(m[1], m[2])
    elif kind == "temp":
        value = float(m[2])
        if value <= OFFLINE_C:
            fields["temps_off"].append(m[1])
        else:
            fields["temps_c"][m[1]] = value
    elif kind == "rail":
        rails, name = fields["rails"], m[1]
        if name in rails:  # AGX Orin prints two unconnected "NC" channels: keep both
            name = next(f"{m[1]}#{k}" for k in range(2, len(rails) + 3) if f"{m[1]}#{k}" not in rails)
        rails[name] = RailPower(float(m[2]), float(m[3]), float(m[4]) if m[4] else None)
    else:
        base = m[1].removesuffix("_FREQ")
        if base == "GR3D2":
            fields["gpu"] = _second_gpc(fields.get("gpu"), _engine(m[2]))
            return
        slot = {"EMC": "emc", "GR3D": "gpu"}.get(base)
        engine = _engine(m[2])
        if slot == "gpu" and "gpu" in fields:  # GR3D2 came first
            engine = _second_gpc(engine, fields["gpu"])
        (fields if slot else fields["engines"])[slot or m[1]] = engine


def _scan(line: str, fields: dict[str, Any]) -> None:
    pos, end = 0, len(line.rstrip())
    while pos < end:
        kind, m = next((kind, m) for kind, p in _PATTERNS if (m := p.match(line, pos)) is not None)
        _apply(fields, kind, m)
        pos = m.end()


def parse_tegrastats(line: str) -> TegrastatsSample:
    """Parse one tegrastats line (any JetPack 4..7 or Thor format); ValueError if it is not one."""
    fields: dict[str, Any] = {"temps_c": {}, "temps_off": [], "rails": {}, "engines": {}, "extra": []}
    _scan(line, fields)
    if not any(k in fields for k in ("ram", "cpus", "emc", "gpu")):
        raise ValueError(
            "not a tegrastats line: expected tokens like 'RAM used/totalMB', 'CPU [pct%@MHz,...]', "
            f"'EMC_FREQ pct%@MHz', 'GR3D_FREQ pct%@MHz'; got {line.strip()[:100]!r}"
        )
    for key in ("temps_c", "rails", "engines"):
        fields[key] = MappingProxyType(fields[key])
    fields["temps_off"], fields["extra"] = tuple(fields["temps_off"]), tuple(fields["extra"])
    return TegrastatsSample(**fields)


def read_tegrastats(lines: Iterable[str]) -> list[TegrastatsSample]:
    """Parse a log; blank lines and ``#`` comment lines (fixture provenance) are skipped."""
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            samples.append(parse_tegrastats(line))
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}; remove or fix that line") from exc
    return samples


@dataclass(frozen=True)
class SensorMapping:
    """How raw sensor names map onto the board: total-power rails, CPU clusters, GPU unit name.

    ``total_rails`` empty means "the first of :data:`INPUT_RAILS` present" (the board input). Empty
    ``clusters`` means one unit ``"cpu"`` over every core. Temperatures whose name starts with an
    entry of ``ignore_temps`` (case-insensitive) are dropped: Jetson PMIC zones read a constant.
    ``tables`` (unit name or ``"emc"`` -> ascending Hz) lets truncated MHz be snapped to the table;
    ``zone_types`` (the catalogue's sysfs zone types) renames ``CPU``/``cpu`` to ``CPU-therm``/``cpu-thermal``.
    """

    total_rails: tuple[str, ...] = ()
    clusters: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    gpu_unit: str = "gpu"
    ignore_temps: tuple[str, ...] = ("PMIC",)
    tables: Mapping[str, tuple[int, ...]] = field(default_factory=lambda: MappingProxyType({}))
    zone_types: tuple[str, ...] = ()

    @classmethod
    def from_board(cls, spec: BoardSpec) -> SensorMapping:
        clusters = {u.name: u.cpus for u in spec.units if u.kind == "cpu" and u.cpus}
        gpu = next((u.name for u in spec.units if u.kind == "gpu"), "gpu")
        scale = {"Hz": 1, "kHz": 1_000, "MHz": MHZ}
        domains = {d.name: d for d in spec.domains}
        tables = {u.name: tuple(f * scale[d.unit] for f in d.table)
                  for u in spec.units if (d := domains.get(u.domain)) is not None and d.table}
        emc = next((d for d in spec.domains if d.kind == "emc" and d.table), None)
        if emc is not None:
            tables["emc"] = tuple(f * scale[emc.unit] for f in emc.table)
        return cls(tuple(spec.power_total), MappingProxyType(clusters), gpu, tables=MappingProxyType(tables),
                   zone_types=tuple(z.type for z in spec.thermal))

    def zone_name(self, name: str) -> str:
        """The catalogue's zone type for a tegrastats/jtop zone name (``CPU`` -> ``CPU-therm``), else ``name``."""
        if name in self.zone_types:
            return name
        wanted = name.lower()
        for kind in self.zone_types:
            low = kind.lower()
            if any(low == wanted + suffix for suffix in _ZONE_SUFFIXES):
                return kind
        return name

    def keeps_temp(self, name: str, value_c: float) -> bool:  # False: offline (-256 °C) or ignored
        return value_c > OFFLINE_C and not name.upper().startswith(tuple(i.upper() for i in self.ignore_temps))

    def groups(self, ncores: int) -> Mapping[str, tuple[int, ...]]:
        """Cluster name -> cpu ids (one ``"cpu"`` group of ``ncores`` when no clusters are given)."""
        return self.clusters or {"cpu": tuple(range(ncores))}


def total_power_mw(
    rails_mw: Mapping[str, float], mapping: SensorMapping, problems: list[str] | None = None
) -> float | None:
    """Board power in mW by ``mapping``'s rule; None when a rail is missing (said in ``problems``).

    A rail of :data:`UNPRINTED_RAILS` that is missing while the others are there leaves a partial
    total (the sum of the rest), said in ``problems``: JetPack 6/7 tegrastats on AGX Orin."""
    wanted = mapping.total_rails or next(((r,) for r in INPUT_RAILS if r in rails_mw), ())
    if wanted and all(r in rails_mw for r in wanted):
        return sum(rails_mw[r] for r in wanted)
    unprinted = [r for r in wanted if r not in rails_mw and r in UNPRINTED_RAILS]
    present = [r for r in wanted if r in rails_mw]
    if unprinted and present and len(present) + len(unprinted) == len(wanted):
        if problems is not None:
            why = "; ".join(f"{r}: {UNPRINTED_RAILS[r]}" for r in unprinted)
            problems.append(f"total power is partial: the sum of {present} without {unprinted} ({why})")
        return sum(rails_mw[r] for r in present)
    if problems is not None:
        rails = list(mapping.total_rails or INPUT_RAILS)
        problems.append(f"total power: no rails {rails} in the reading; set power_total in the board catalogue")
    return None


def cluster_util(busy: Sequence[float | None], mapping: SensorMapping) -> tuple[dict[str, float], list[str]]:
    """Busy fraction per cluster: mean over its online cores (``busy[i]`` None = off; all off = 0.0).
    A cluster whose cores the source does not list is left out and named in the returned problems."""
    util, problems = {}, []
    for unit, cpus in mapping.groups(len(busy)).items():
        if any(c >= len(busy) for c in cpus):
            problems.append(f"util {unit}: cpus {list(cpus)} not all reported (only {len(busy)} cores)")
            continue
        online = [b for b in (busy[c] for c in cpus) if b is not None]
        util[unit] = sum(online) / len(online) if online else 0.0
    return util, problems


def cluster_freqs_hz(core_hz: Sequence[int | None], mapping: SensorMapping) -> dict[str, int]:
    """Clock per cluster in Hz: the highest among its online cores (clusters share one clock)."""
    groups = mapping.groups(len(core_hz)).items()
    clocks = {unit: [hz for c in cpus if c < len(core_hz) and (hz := core_hz[c])] for unit, cpus in groups}
    return {unit: max(hz) for unit, hz in clocks.items() if hz}


def snap_hz(printed_hz: int, table: Sequence[int]) -> int:
    """The table entry nearest to a tegrastats clock (printed as truncated MHz); ``printed_hz`` without a table.

    tegrastats drops the fraction (76.8 MHz prints as 76), so the entry in [printed, printed + 1 MHz)
    is preferred over a nearer one below (``@1109`` is 1109.6 MHz, not 1109.0)."""
    if not table:
        return printed_hz
    window = [f for f in table if printed_hz <= f < printed_hz + MHZ]
    return window[0] if window else min(table, key=lambda f: (abs(f - printed_hz), f))


def sample_freqs_hz(sample: TegrastatsSample, mapping: SensorMapping = SensorMapping(),
                    notes: list[str] | None = None) -> dict[str, int]:
    """Current clocks in Hz by cluster unit name, the GPU unit name and ``"emc"``.

    With ``mapping.tables`` each clock is snapped to its table (tegrastats truncates MHz); a clock
    that changed by snapping is said in ``notes``, as is a clock printed as ``@0`` (not read)."""
    raw = cluster_freqs_hz([c.freq_hz for c in sample.cpus], mapping)
    for name, engine in ((mapping.gpu_unit, sample.gpu), ("emc", sample.emc)):
        if engine is not None and engine.freq_hz is not None:
            raw[name] = engine.freq_hz
        elif engine is not None and engine.clock_unread and notes is not None:
            notes.append(f"clock {name}: tegrastats printed @0, i.e. no reading (rail-gated or not readable); left out")
    out = {}
    for name, hz in raw.items():
        out[name] = snap_hz(hz, mapping.tables.get(name, ()))
        if out[name] != hz and notes is not None:
            notes.append(f"clock {name}: tegrastats printed {hz // MHZ} MHz (truncated); "
                         f"taken as the table entry {out[name]} Hz")
    return out


def to_observation(
    sample: TegrastatsSample, t: float, mapping: SensorMapping = SensorMapping(), *, simulated: bool = False
) -> Observation:
    """An Observation at ``t`` (s): rails and total in mW, °C, util fractions per CPU cluster, GPU and
    ``"emc"`` (memory-bus load). What the line lacks is named in ``unavailable``, never guessed."""
    rails = {name: r.cur_mw for name, r in sample.rails.items() if name.split("#")[0].upper() != "NC"}
    util, problems = cluster_util([c.load_pct / 100 if c.load_pct is not None else None for c in sample.cpus], mapping)
    total = total_power_mw(rails, mapping, problems)
    for name, engine, token in ((mapping.gpu_unit, sample.gpu, "GR3D_FREQ"), ("emc", sample.emc, "EMC_FREQ")):
        if engine is not None and engine.load_pct is not None:
            util[name] = engine.load_pct / 100
        elif engine is not None and engine.on:
            problems.append(f"util {name}: this tegrastats prints no load for it (Thor GR3D, or EMC_FREQ @MHz)")
        elif engine is None and sample.cpus:
            problems.append(f"util {name}: the line has no {token} (tegrastats prints it only when run as root)")
    temps = {mapping.zone_name(n): v for n, v in sample.temps_c.items() if mapping.keeps_temp(n, v)}
    return Observation(t, power_mw=frozen_map(rails), total_power_mw=total, temps_c=frozen_map(temps),
                       util=frozen_map(util), simulated=simulated, unavailable=tuple(problems))
