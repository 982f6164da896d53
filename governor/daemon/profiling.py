"""Profiling a model on a board (real or simulated) through the real drivers, and the table it yields.

Theory of operation
-------------------
A *mapping* is ``"<unit>/<threads>"``: a compute unit of the catalogue and a thread count (1 for
accelerators). Each mapping varies only the clocks that matter to it, its unit's DVFS domain and
the memory clock; every other domain is held at its lowest frequency (an idle accelerator at full
clock only burns power). So the space is a union of small per-mapping grids inside one profile.

:class:`BoardSource` measures one point: it writes the setpoints through the drivers (the read-back
is recorded; a kernel that clamps is noticed), waits out thermal throttling, runs the network
``reps`` times and keeps the median latency. Energy is the backend's own figure when it has one (a
simulated board's rail energy, a RAPL counter), otherwise mean board power from the power sensors
sampled across the repetitions, times latency. Without any power source only latency is modelled.

:func:`board_table` runs the active sampler over that space and turns the fitted models into the
optimiser's :class:`~governor.core.decision.optimiser.DecisionTable` over every OPP combination.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from governor.core.board import BoardSpec, profile_label
from governor.core.decision.optimiser import DecisionTable
from governor.core.modelmeta import ModelMeta
from governor.core.perf.profile import ProfileModel
from governor.core.perf.sampling import ActiveSampler, SamplerSettings
from governor.core.perf.schema import (
    ProfileError,
    Provenance,
    build_profile_doc,
    dump_profile,
    parse_profile,
    profile_model,
)
from governor.core.perf.space import Measurement, ProfilePoint, Space
from governor.core.types import OperatingPoint, Setpoints
from governor.daemon.config import MODEL_NAME_CHARS
from governor.daemon.progress import Progress
from governor.daemon.tables import CORE_MS_PROXY_MJ, MeasuredTable

__all__ = ["BoardSource", "MeasureError", "ProfileMismatch", "board_space", "board_table", "check_named_profile",
           "mapping_name", "parse_mapping"]

_THROTTLE_TOLERANCE = 0.98


class MeasureError(RuntimeError):
    """A point could not be measured; the message says why and what to do."""


class ProfileMismatch(ProfileError):
    """A readable profile made for another model, board, or layout of this board than the one served."""


def mapping_name(unit: str, threads: int) -> str:
    return f"{unit}/{threads}"


def parse_mapping(mapping: str) -> tuple[str, int]:
    unit, _, threads = mapping.partition("/")
    return unit, int(threads or 1)


def _thread_counts(cores: int) -> list[int]:
    counts = sorted({1, *(2**i for i in range(1, 8) if 2**i < cores), cores})
    return [c for c in counts if 1 <= c <= cores]


def board_space(spec: BoardSpec, domains_hz: dict[str, tuple[int, ...]], meta: ModelMeta, *,
                units: Sequence[str] = (), groups: Sequence[int] = (), cpu_count: int = 1,
                unit_kinds: frozenset[str] = frozenset({"cpu", "gpu", "dla"})) -> Space:
    """The candidate points: per mapping, its unit's domain x the memory domain x k; others at minimum.

    ``domains_hz`` holds the available frequencies (Hz) of every domain the drivers opened.
    """
    names = tuple(domains_hz)
    ks = tuple(groups) or tuple(range(1, meta.groups + 1))
    emc = [d for d in names if spec.domain(d).kind == "emc"] if any(d.name in names for d in spec.domains) else []
    rows, mapping_of, mappings = [], [], []
    for unit in spec.units:
        if (units and unit.name not in units) or unit.kind not in unit_kinds:
            continue
        own = [unit.domain] if unit.domain in names else [d for d in names if _kind(spec, d) == unit.kind]
        varied = [*own, *(e for e in emc if e not in own)]
        cores = len(unit.cpus) or cpu_count if unit.kind == "cpu" else 1
        for threads in _thread_counts(cores):
            mappings.append(mapping_name(unit.name, threads))
            for combo in itertools.product(*(domains_hz[d] for d in varied), ks):
                hz = {d: min(domains_hz[d]) for d in names}
                hz.update(zip(varied, combo[:-1], strict=True))
                rows.append([*(float(hz[d]) for d in names), float(combo[-1])])
                mapping_of.append(len(mappings) - 1)
    if not rows:
        raise MeasureError(f"nothing to profile: units {list(units) or 'all'} match no compute unit of {spec.name}")
    opp = tuple(tuple(float(f) for f in sorted(domains_hz[d])) for d in names)
    return Space(names, np.array(rows), np.array(mapping_of, dtype=np.int64), tuple(mappings), opp)


def _kind(spec: BoardSpec, domain: str) -> str:
    try:
        return spec.domain(domain).kind
    except KeyError:
        return "cpu"  # discovered host policies


@dataclass
class BoardSource:
    """Measures profile points on an opened board (see the module doc)."""

    board: Any
    backend: Any
    batch: np.ndarray
    reps: int = 5
    max_reps: int = 50
    stable_rel: float = 0.02  # the median counts as stable when the last reps move it less than this
    min_window_s: float = 0.05
    cool_wait_s: float = 0.5
    cool_margin_c: float = 10.0  # start a point only this far below the board's passive trip points
    cool_limit_s: float = 120.0
    idle_baseline: bool = False  # subtract idle board power (mW) from sensor-based energy
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        # Energy from power sensors needs the run to span several sensor updates (XU3 INA231: ~264 ms).
        rates = [getattr(s, "update_interval_s", 0.0) for s in getattr(self.board, "power", ())]
        self.min_window_s = max(self.min_window_s, 5 * max(rates, default=0.0))

    def measure(self, point: ProfilePoint) -> Measurement:
        unit, threads = parse_mapping(point.mapping)
        op = OperatingPoint(unit, threads, point.setpoints, point.groups)
        self._cool_down()
        idle_mw = (self.idle_power_mw() or 0.0) if self.idle_baseline else 0.0
        for _attempt in range(3):
            self._apply(point.setpoints)
            latencies, energies, powers = self._runs(op)
            if not self._throttled(point.setpoints):
                break
            self.sleep(self.cool_wait_s)  # discard: the clocks were capped under us
        latency = statistics.median(_without_outliers(latencies))
        if energies:
            energy = statistics.median(_without_outliers(energies))
        elif powers:
            energy = max(statistics.fmean(powers) - idle_mw, 1e-3) * latency / 1000.0
        else:
            energy = None
        simulated = bool(getattr(self.backend, "simulated", False))
        power = energy / latency * 1000.0 if energy else None
        return Measurement(latency_ms=latency, power_mw=power, energy_mj=energy, simulated=simulated)

    def _apply(self, setpoints: Setpoints) -> None:
        applied = self.board.apply(setpoints)
        errors = getattr(applied, "errors", {})
        if errors:
            raise MeasureError(f"could not set {errors}; fix the permission or driver problem and profile again")

    def _runs(self, op: OperatingPoint) -> tuple[list[float], list[float], list[float]]:
        latencies: list[float] = []
        energies: list[float] = []
        powers: list[float] = []
        start = self.clock()
        while self._more(latencies, start):
            outcome = self.backend.run(self.batch, op)
            latencies.append(outcome.latency_ms)
            if outcome.energy_mj is not None:
                energies.append(outcome.energy_mj)
            elif self.board.power:
                total = self.board.sample().total_power_mw
                if total is not None:
                    powers.append(total)
        return latencies, energies, powers

    def _more(self, latencies: list[float], start: float) -> bool:
        """Run again until ``reps`` runs, the energy window and a stable median (or ``max_reps``)."""
        n = len(latencies)
        if n < self.reps or (self.clock() - start < self.min_window_s and n < 1000):
            return True
        if n >= self.max_reps:
            return False
        half = statistics.median(latencies[: n // 2 + 1])
        return abs(statistics.median(latencies) - half) > self.stable_rel * half

    def _cool_down(self) -> None:
        """Wait (bounded) until every zone with a passive trip is ``cool_margin_c`` below it. A zone that
        gave no reading (powered off: EAGAIN on JetPack 6) counts as hot as the hottest one read, never as
        cool; with no zone read at all there is nothing to wait on (a board whose thermal part failed)."""
        trips = {z.type: z.passive_trip_c for z in getattr(self.board.spec, "thermal", ()) if z.passive_trip_c}
        deadline = self.clock() + self.cool_limit_s
        while trips and self.clock() < deadline:
            temps = self.board.sample().temps_c
            hottest = max(temps.values(), default=None)
            if hottest is None or all(temps.get(zone, hottest) < trip - self.cool_margin_c
                                      for zone, trip in trips.items()):
                return
            self.sleep(self.cool_wait_s)

    def idle_power_mw(self) -> float | None:
        """Board power with nothing of ours running, mW (median over the energy window), in the terms run
        energy is measured in: the backend's own meter when it has one (``Backend.power_mw``), else the
        power sensors; None with neither."""
        own_meter = getattr(self.backend, "power_mw", lambda: None)
        own_meter()  # a counter-based meter reports the mean since its previous call: start the interval
        own: list[float] = []
        sensed: list[float] = []
        start = self.clock()
        while self.clock() - start < self.min_window_s or not (own or sensed):
            self.sleep(min(0.01, self.min_window_s))
            power = own_meter()
            if power is not None:
                own.append(power)
                continue
            total = self.board.sample().total_power_mw
            if total is None:
                return None
            sensed.append(total)
        return statistics.median(own or sensed)

    def _throttled(self, setpoints: Setpoints) -> bool:
        obs = self.board.sample()
        return any(name in obs.domains and obs.domains[name].cur_hz < hz * _THROTTLE_TOLERANCE
                   for name, hz in setpoints.hz.items())


def sim_time(target: Any) -> dict[str, Any]:
    """On a virtual-clock simulated board, waiting means advancing simulated time."""
    from governor.sim import VirtualClock

    sim = getattr(target, "sim", None)
    if sim is None or not isinstance(sim.clock, VirtualClock):
        return {}
    return {"sleep": sim.advance, "clock": sim.clock}


def _without_outliers(values: list[float]) -> list[float]:
    """Drop values more than 5 median absolute deviations from the median (a preempted run)."""
    if len(values) < 5:
        return values
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values) or 1e-12
    kept = [v for v in values if abs(v - mid) <= 5 * mad]
    return kept or values


def sample_board(source: BoardSource, space: Space, settings: SamplerSettings,
                 progress: Callable[[ActiveSampler], None] | None = None) -> ActiveSampler:
    """The active sampler run to its end on ``source``; ``progress`` is called after every point (the
    first batch alone, every mapping's corners, is a third of the budget)."""
    sampler = ActiveSampler(space, settings)
    while batch := sampler.next_batch():
        for index in batch:
            sampler.record(index, source.measure(space.point(index)))
            if progress is not None:
                progress(sampler)
    return sampler


def table_from_model(space: Space, model: ProfileModel, meta: ModelMeta,
                     idle_power_mw: float | None = None) -> MeasuredTable:
    """Predict latency and energy at every candidate point of ``space`` (mappings without a latency model,
    never measured, are left out); ``idle_power_mw`` is the board's idle power when profiled."""
    fitted = [m for m in space.mappings if model.has("latency_ms", m)]
    if not fitted:
        raise MeasureError("no mapping could be measured; check `governor status` for failing domains")
    if len(fitted) < len(space.mappings):
        space = _only(space, fitted)
    has_energy = all(model.has("energy_mj", m) or model.has("power_mw", m) for m in space.mappings)
    lat, energy = np.empty(len(space.grid)), np.empty(len(space.grid))
    for m, mapping in enumerate(space.mappings):
        rows = np.flatnonzero(space.mapping_of == m)
        lat[rows] = model.predict("latency_ms", mapping, space.grid[rows])[0]
        if has_energy:
            energy[rows] = model.predict("energy_mj", mapping, space.grid[rows])[0]
    ops = []
    for i in range(len(space.grid)):
        sp = space.point(i)
        unit, threads = parse_mapping(sp.mapping)
        ops.append(OperatingPoint(unit, threads, sp.setpoints, sp.groups))
    lat = np.maximum(lat, 1e-6)
    if not has_energy:
        energy = np.array([op.threads for op in ops]) * lat * CORE_MS_PROXY_MJ
    energy = np.maximum(energy, 1e-9)
    accuracy = np.array([meta.accuracy_rank(op.groups) for op in ops])
    table = DecisionTable(tuple(ops), lat, energy, accuracy, simulated=model.simulated)
    return MeasuredTable(table, has_energy, reps=0, idle_power_mw=idle_power_mw)


def _only(space: Space, mappings: Sequence[str]) -> Space:
    keep_ids = [space.mappings.index(m) for m in mappings]
    rows = np.flatnonzero(np.isin(space.mapping_of, keep_ids))
    remap = {old: new for new, old in enumerate(keep_ids)}
    mapping_of = np.array([remap[int(m)] for m in space.mapping_of[rows]], dtype=np.int64)
    return Space(space.domains, space.grid[rows], mapping_of, tuple(mappings), space.opp_hz, space.channels_per_group)


def profile_board(target: Any, backend: Any, meta: ModelMeta, space: Space, settings: SamplerSettings,
                  say: Callable[[str], None], progress_every_s: float = 10.0) -> tuple[ActiveSampler, float | None]:
    """Run the active sampler on the board; the board's baseline is restored afterwards. Also returns the
    board's idle power (mW, None without a sensor), measured first, before anything is written. A progress
    line with an ETA (wall-clock s) is said after the first point and then every ``progress_every_s``."""
    label = " (simulated)" if target.simulated else ""
    say(f"profiling {len(space.mappings)} mappings over {len(space.grid)} candidate points{label}, "
        f"at most {settings.max_points} measurements")
    batch = np.zeros((1, *meta.input_shape), dtype=np.float32)
    source = BoardSource(target.board, backend, batch, reps=3, **sim_time(target))
    idle_mw = source.idle_power_mw()
    baselines = target.board.snapshot()
    progress = Progress(settings.max_points, every_s=progress_every_s)

    def report(sampler: ActiveSampler) -> None:
        done = len(sampler.measured)
        if progress.due() or done >= settings.max_points:
            say(f"profiling: {progress.line(done, len(space.grid))}")

    try:
        return sample_board(source, space, settings, report), idle_mw
    finally:
        target.board.restore(baselines)


def save_profile(path: Path, model_name: str, target: Any, space: Space, sampler: ActiveSampler,
                 idle_power_mw: float | None = None) -> None:
    from governor import __version__

    provenance = Provenance(
        board=profile_label(target.spec.name, target.simulated), kernel=_kernel(target), jetpack="unknown",
        sensor=",".join(target.spec.power_total) or "none",
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), simulated=target.simulated,
        source=("sim:" if target.simulated else "board:") + target.spec.name, tool=f"dnn-governor {__version__}")
    doc = build_profile_doc(model_name, provenance, space, sampler.settings, sampler.status(), sampler.measured,
                            sampler.model(), idle_power_mw)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(dump_profile(doc), encoding="utf-8")
    os.replace(tmp, path)


def _kernel(target: Any) -> str:
    try:
        return str(target.board.sysfs.read("proc/sys/kernel/osrelease")).strip() or "unknown"
    except OSError:
        return "unknown"


def load_profile_table(path: Path, space: Space, meta: ModelMeta, *, target: Any, model_name: str,
                       pinned: bool = False, say: Callable[[str], None] = print) -> MeasuredTable | None:
    """The table from a saved profile, or None if it was measured for another layout of this board (other
    DVFS domains, or a mapping this board does not have; ProfileMismatch instead when ``pinned``). A
    profile of another model or board is refused (ProfileMismatch). A profile of some of the mappings
    (``governor profile --mappings``) serves those only."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read the profile: {exc.strerror}") from exc
    doc = parse_profile(text, str(path))
    _check_made_for(doc, path, target, model_name)
    domains = tuple(d.name for d in doc.space.domains)
    if domains != space.domains or not set(doc.space.mappings) <= set(space.mappings):
        if pinned:
            made = f"domains {', '.join(domains) or 'none'} and mappings {', '.join(doc.space.mappings)}"
            raise ProfileMismatch(f"{path} was measured with {made}, but this board has {_layout(space)}: "
                                  "profile it again on this board with `governor profile`")
        return None
    if len(doc.space.mappings) < len(space.mappings):
        kept = [m for m in space.mappings if m in doc.space.mappings]
        say(f"{path} profiles {', '.join(kept)} only: serving those mappings (profile again without --mappings "
            "for every unit)")
        space = _only(space, kept)
    return table_from_model(space, profile_model(doc), meta, doc.idle_power_mw)


def _check_made_for(doc: Any, path: Path, target: Any, model_name: str) -> None:
    """Refuse a profile of another model or another board (or a simulated one for a real board)."""
    board = profile_label(target.spec.name, target.simulated)
    made = doc.provenance.board
    # The daemon used to save a simulated board's catalogue name; the simulated flag tells them apart.
    made_label = made if made.startswith("sim-") else profile_label(made, doc.provenance.simulated)
    if doc.model[:MODEL_NAME_CHARS] == model_name[:MODEL_NAME_CHARS] and made_label == board:
        return
    raise ProfileMismatch(
        f"{path} is a profile of model {doc.model!r} on board {made_label}, but this daemon serves model "
        f"{model_name!r} on board {board}: make one with `governor profile MODEL --board BOARD` (it writes "
        "where the daemon looks), or pass a matching one with --profile")


def _layout(space: Space) -> str:
    return f"domains {', '.join(space.domains) or 'none'} and mappings {', '.join(space.mappings)}"


def check_named_profile(path: Path | None) -> None:
    """A profile the user named (``serve --profile``) must exist: checked before any work at start-up."""
    if path is None or not path.is_file():
        raise ProfileError(f"{path}: no such profile; make it with `governor profile MODEL --board BOARD --out "
                           f"{path}`, or leave out --profile (the daemon then profiles at first start)")


def board_table(target: Any, backend: Any, meta: ModelMeta, *, say: Callable[[str], None] = print,
                cache: Path | None = None, model_name: str = "model", max_points: int = 0,
                target_mape_pct: float = 2.0, pinned: bool = False, progress_every_s: float = 10.0) -> MeasuredTable:
    """The decision table for ``meta``'s network on ``target``: from ``cache`` if it holds a matching
    profile, else profiled now with the active sampler (and saved to ``cache``).

    ``pinned``: ``cache`` is a profile the user named (``serve --profile``): it is loaded or refused with a
    ProfileError saying why, never measured again nor overwritten. A profile of another model or board is
    refused either way (it was put there by hand)."""
    domains_hz = {name: tuple(d.available_hz()) for name, d in target.board.domains.items()}
    space = board_space(target.spec, domains_hz, meta, cpu_count=os.cpu_count() or 1,
                        unit_kinds=getattr(backend, "unit_kinds", frozenset({"cpu"})))
    if pinned:
        check_named_profile(cache)
    if cache is not None and cache.exists():
        try:
            table = load_profile_table(cache, space, meta, target=target, model_name=model_name, pinned=pinned,
                                       say=say)
        except ProfileError as exc:
            if pinned or isinstance(exc, ProfileMismatch):
                raise
            say(f"ignoring {cache}: {exc}")
            table = None
        if table is not None:
            say(f"loaded profile {cache}")
            return table
        say(f"{cache} was measured for another board layout; profiling again")
    # Each mapping needs its corners measured before its models exist: never fewer than 4 per mapping.
    budget = max(max_points or 24 * len(space.mappings), 4 * len(space.mappings))
    settings = SamplerSettings(max_points=budget, target_mape_pct=target_mape_pct,
                               targets=("latency_ms", "energy_mj"))
    sampler, idle_mw = profile_board(target, backend, meta, space, settings, say, progress_every_s)
    status = sampler.status()
    say(f"measured {status.measured} of {status.candidates} points; stopped: {status.stopped}")
    if cache is not None:
        save_profile(cache, model_name, target, space, sampler, idle_mw)
        say(f"saved profile {cache}")
    return table_from_model(space, sampler.model(), meta, idle_mw)
