"""A probed board: every driver the catalogue describes, behind one sample/apply/restore surface.

Theory of operation
-------------------
:func:`open_board` builds one backend per catalogue part (the registry maps a catalogue
``driver`` to its module's class) and probes each. SUCCESS keeps the part; FAIL and DEFER leave it
out and record why in :attr:`Board.unavailable`, so a board with a rail-gated GPU or no debugfs
still runs with what it has. A DEFER part is kept aside in :attr:`Board.deferred`: a rail-gated GPU
joins the board when :meth:`Board.hold_power` (called once the baseline is saved) powers it up;
anything else joins when the daemon is restarted with the part present.

Per tick the daemon calls :meth:`Board.sample`, which never raises for a sensor or domain that
vanished: the rest of the observation is kept and the failure is listed, with its reason, in
``Observation.unavailable``. :meth:`Board.apply` pins every domain named in the setpoints; a
domain that fails is reported in the result's ``errors`` and the others still apply.

Restoring goes in a fixed order whatever order the baselines come in: CPU hotplug first (a
cpufreq policy whose CPUs are all offline has nothing to write to), then the frequency domains,
then sensor switches (the INA231 ``enable``). Only parts whose baseline could be taken are ever
written to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from governor.core.board import BoardSpec, Domain
from governor.core.types import DomainReading, Observation, Setpoints, frozen_map
from governor.drivers._common import Partial
from governor.drivers._limits import Mode
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Baseline, FreqDomain, LoadSensor, PowerSensor, Probe, ProbeResult, ThermalSensor
from governor.drivers.cpufreq import CpufreqPolicy, discover_policies
from governor.drivers.devfreq import Devfreq
from governor.drivers.emc import BpmpEmc, T210Emc
from governor.drivers.hotplug import CpuHotplug
from governor.drivers.load import CpuLoad, GpuLoad, MaliLoad
from governor.drivers.mali import MaliVendor
from governor.drivers.power import open_power_sensor, total_power_mw
from governor.drivers.sources import Category, LiveSource, SourceChoice, choose_source, merge
from governor.drivers.thermal import ThermalZones

__all__ = ["DOMAIN_BACKENDS", "Applied", "Board", "RestoreError", "open_board"]

DOMAIN_BACKENDS: Mapping[str, Callable[[SysfsRoot, Domain], FreqDomain]] = {
    "cpufreq": CpufreqPolicy,
    "devfreq": Devfreq,
    "tegra-emc-bpmp": BpmpEmc,
    "tegra-emc-t210": T210Emc,
    "mali-vendor": MaliVendor,
}


class RestoreError(SysfsError):
    """Some baselines could not be written back; the message lists each with its reason."""


class Applied(dict[str, DomainReading]):
    """Read-back per domain that applied; ``errors`` maps each domain that did not to the reason."""

    def __init__(self, readings: Mapping[str, DomainReading], errors: Mapping[str, str]) -> None:
        super().__init__(readings)
        self.errors: dict[str, str] = dict(errors)


def _probe(part: Any) -> Probe:
    try:
        result: Probe = part.probe()
    except (OSError, ValueError) as exc:
        return Probe(ProbeResult.FAIL, str(exc))
    return result


def _partial(read_partial: Callable[[], Partial] | None, read: Callable[[], dict[str, float]], name: str) -> Partial:
    """One sensor sweep that cannot raise: foreign sensors without ``read_partial`` are wrapped whole."""
    try:
        return read_partial() if read_partial else Partial(read(), {})
    except Exception as exc:  # a sensor backend we did not write must not stop the sweep
        return Partial({}, {name: f"{type(exc).__name__}: {exc}"})


class Board:
    """The parts of one board that probed SUCCESS. Build it with :func:`open_board`."""

    def __init__(self, spec: BoardSpec, sysfs: SysfsRoot, clock: Callable[[], float]) -> None:
        self.spec = spec
        self.sysfs = sysfs
        self.clock = clock
        self.domains: dict[str, FreqDomain] = {}
        self.power: list[PowerSensor] = []
        self.thermal: list[ThermalSensor] = []
        self.load: list[LoadSensor] = []
        self.hotplug: CpuHotplug | None = None
        self.deferred: dict[str, FreqDomain] = {}  # domains that probed DEFER (a rail-gated GPU)
        self.unavailable: dict[str, str] = {}
        self.probes: dict[str, Probe] = {}
        self.source: LiveSource | None = None  # jtop or tegrastats over the sysfs sensors
        self.source_choice = SourceChoice("sysfs")

    def __repr__(self) -> str:
        return f"Board({self.spec.name!r}, domains={list(self.domains)}, unavailable={list(self.unavailable)})"

    def _add_domain(self, domain: FreqDomain) -> None:
        self.domains[domain.name] = domain

    def _admit(self, name: str, part: Any, attach: Callable[[Any], None]) -> None:
        """Probe ``part``; attach it on SUCCESS, else record why."""
        probe = self.probes[name] = _probe(part)
        if probe.result is ProbeResult.SUCCESS:
            self.unavailable.pop(name, None)
            attach(part)
            return
        self.unavailable[name] = f"{probe.result.value}: {probe.detail}"

    def sample(self) -> Observation:
        """One sweep of every domain and sensor; failures are listed, never raised.

        With a live source (:attr:`source`, jtop or tegrastats) its readings are merged over the sysfs
        sweep as :func:`governor.drivers.sources.merge` says: clocks from sysfs, rails/temperatures/load
        from the source where it has them, sysfs for the rest."""
        t = self.clock()
        problems: dict[Category, dict[str, str]] = {"domains": {}, "power": {}, "thermal": {}, "load": {}}
        domains: dict[str, DomainReading] = {}
        for name, domain in self.domains.items():
            try:
                domains[name] = domain.read()
            except (OSError, ValueError) as exc:
                problems["domains"][name] = str(exc)
        rails = self._sweep(self.power, "read_mw", problems["power"])
        total = total_power_mw(rails, self.spec.power_total) if self.power else None
        if self.power and total is None:
            needs = list(self.spec.power_total) or "any"
            problems["power"]["total_power"] = f"needs rails {needs}; have {sorted(rails)}"
        obs = Observation(
            t=t,
            domains=MappingProxyType(domains),
            power_mw=frozen_map(rails),
            total_power_mw=total,
            temps_c=frozen_map(self._sweep(self.thermal, "read_c", problems["thermal"])),
            util=frozen_map(self._sweep(self.load, "read_util", problems["load"])),
            unavailable=tuple(f"{name}: {why}" for found in problems.values() for name, why in found.items()),
        )
        if self.source is None:
            return obs
        try:
            live = self.source.observe(t)
        except Exception as exc:  # a source must not stop the sweep (both of ours never raise)
            live = Observation(t, unavailable=(f"{self.source.name}: {type(exc).__name__}: {exc}",))
        return merge(obs, problems, live, self.source.name)

    def close(self) -> None:
        """Stop the live source (reaps a tegrastats child); the sysfs drivers hold nothing open."""
        source, self.source = self.source, None
        if source is not None:
            source.close()

    @staticmethod
    def _sweep(sensors: Iterable[Any], method: str, problems: dict[str, str]) -> dict[str, float]:
        values: dict[str, float] = {}
        for sensor in sensors:
            name = getattr(sensor, "name", type(sensor).__name__)
            part = _partial(getattr(sensor, "read_partial", None), getattr(sensor, method), name)
            values.update(part.values)
            problems.update(part.errors)
        return values

    def apply(self, setpoints: Setpoints) -> Applied:
        """Pin each named domain (Hz); returns the read-backs, with failures in ``.errors``."""
        readings: dict[str, DomainReading] = {}
        errors: dict[str, str] = {}
        for name, hz in setpoints.hz.items():
            domain = self.domains.get(name)
            if domain is None:
                errors[name] = self.unavailable.get(name) or f"no such domain; this board has {sorted(self.domains)}"
                continue
            try:
                readings[name] = domain.pin(hz)
            except (OSError, ValueError) as exc:
                errors[name] = str(exc)
        return Applied(readings, errors)

    def hold_power(self) -> list[str]:
        """Power up what must stay up while its clock is set (nvgpu's railgate_enable = 0, as
        jetson_clocks does) and admit deferred domains that appear. Writes: call only once
        :meth:`snapshot` is saved, and snapshot again before writing a domain that joined. Returns notes."""
        notes = []
        for name, part in [*self.domains.items(), *self.deferred.items()]:
            hold = getattr(part, "hold_power", None)
            note = hold() if hold is not None else ""
            if name in self.deferred:
                self._admit(name, part, self._add_domain)
                if name in self.domains:
                    del self.deferred[name]
                    note = f"{note}; {name} joined" if note else f"{name} joined"
            if note:
                notes.append(f"{name}: {note}")
        return notes

    def _restorable(self) -> list[Any]:
        """In restore order: hotplug, domains, rail gates (after the limits, written while the GPU is
        held up), sensor switches. A deferred GPU's gate is here too: hold_power may write it."""
        sensors = [s for s in self.power if hasattr(s, "snapshot")]
        gates = [g for d in (*self.domains.values(), *self.deferred.values()) if (g := getattr(d, "gate", None))]
        return [p for p in (self.hotplug, *self.domains.values(), *gates, *sensors) if p is not None]

    def snapshot(self) -> list[Baseline]:
        """Baselines of everything this board may write; a part that cannot be saved is dropped."""
        baselines: list[Baseline] = []
        for part in self._restorable():
            try:
                baselines.append(part.snapshot())
            except (OSError, ValueError) as exc:
                self._drop(part, f"cannot save its baseline, so it will not be touched: {exc}")
        return baselines

    def _drop(self, part: Any, why: str) -> None:
        name = getattr(part, "name", str(part))
        self.unavailable[name] = why
        self.domains = {n: d for n, d in self.domains.items() if d is not part}
        self.deferred = {n: d for n, d in self.deferred.items() if d is not part}
        for domain in (*self.domains.values(), *self.deferred.values()):
            if getattr(domain, "gate", None) is part:  # a gate without a baseline is never written
                domain.gate = None  # type: ignore[attr-defined]
        self.power = [s for s in self.power if s is not part]
        if part is self.hotplug:
            self.hotplug = None

    def restore(self, baselines: Iterable[Baseline]) -> None:
        """Write baselines back (hotplug, then domains, then sensors); raises RestoreError at the end."""
        by_owner = {b.owner: b for b in baselines}
        errors: list[str] = []
        for part in self._restorable():
            baseline = by_owner.pop(part.owner, None)
            if baseline is None:
                continue
            try:
                part.restore(baseline)
            except (OSError, ValueError) as exc:
                errors.append(f"{part.owner}: {exc}")
        errors += [f"{owner}: no such part on this board" for owner in by_owner]
        if errors:
            raise RestoreError("could not restore " + "; ".join(errors))


def _domain_specs(spec: BoardSpec, sysfs: SysfsRoot) -> list[Domain]:
    declared = list(spec.domains)
    if spec.discover_cpufreq:
        claimed = {sysfs.realpath(p) for d in declared if d.driver == "cpufreq" for p in d.paths if sysfs.exists(p)}
        declared += [d for d in discover_policies(sysfs) if sysfs.realpath(d.paths[0]) not in claimed]
    return declared


def _domain(spec: BoardSpec, dspec: Domain, sysfs: SysfsRoot, mode: Mode) -> FreqDomain:
    if dspec.driver == "cpufreq":
        cpus = next((u.cpus for u in spec.units if u.domain == dspec.name), ())
        return CpufreqPolicy(sysfs, dspec, mode=mode, cpus=cpus)
    if dspec.driver == "devfreq":
        return Devfreq(sysfs, dspec, mode=mode)
    return DOMAIN_BACKENDS[dspec.driver](sysfs, dspec)


def _gpu_loads(spec: BoardSpec, sysfs: SysfsRoot) -> list[GpuLoad | MaliLoad]:
    units = {u.domain: u.name for u in spec.units if u.domain}
    mali: list[GpuLoad | MaliLoad] = [MaliLoad(sysfs, units.get(d.name, d.name), d) for d in spec.domains
                                      if d.driver == "mali-vendor"]  # percent, not nvgpu's per-mille
    return mali + [GpuLoad(sysfs, units.get(d.name, d.name), d.load_path) for d in spec.domains
                   if d.load_path and d.driver != "mali-vendor"]


def open_board(spec: BoardSpec, sysfs: SysfsRoot, *, clock: Callable[[], float], mode: Mode = "limits",
               sensors: str = "sysfs") -> Board:
    """Build and probe every part of ``spec`` under ``sysfs``. ``clock`` gives seconds (monotonic).

    ``mode`` picks how cpufreq/devfreq domains hold a frequency: ``limits`` (min = max) or
    ``userspace`` (setspeed under the userspace governor, where the kernel offers it). ``sensors``
    (``sysfs``, ``auto``, ``jtop``, ``tegrastats``) picks a live source merged over the sysfs sensors
    (:mod:`governor.drivers.sources`); SourceError if one named explicitly cannot be used. Call
    :meth:`Board.close` at the end.
    """
    board = Board(spec, sysfs, clock)
    for dspec in _domain_specs(spec, sysfs):
        domain = _domain(spec, dspec, sysfs, mode)
        board._admit(dspec.name, domain, board._add_domain)
        if board.probes[dspec.name].result is ProbeResult.DEFER:
            board.deferred[dspec.name] = domain
    for device in spec.power:
        sensor = open_power_sensor(sysfs, device, clock=clock)
        board._admit(sensor.name, sensor, board.power.append)
    thermal = ThermalZones(sysfs)
    board._admit(thermal.name, thermal, board.thermal.append)
    loads: list[CpuLoad | GpuLoad | MaliLoad] = [CpuLoad(sysfs, spec.units), *_gpu_loads(spec, sysfs)]
    for load in loads:
        board._admit(load.name, load, board.load.append)
    if spec.hotplug_cpus:
        hotplug = CpuHotplug(sysfs, spec.hotplug_cpus)
        board._admit(hotplug.name, hotplug, lambda h: setattr(board, "hotplug", h))
    board.source, board.source_choice = choose_source(sensors, spec, sysfs)
    return board
