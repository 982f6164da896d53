"""Human-readable renderings of results, status and telemetry for the ``governor-client`` command.

Frequencies print in MHz, latency in ms, energy in mJ, power in mW, temperatures in °C. Anything
simulated says so on its first line, so a copied snippet never passes simulated figures as measured.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from governor.core import protocol as p
from governor_client._calls import Advice, InferResult

__all__ = ["format_advice", "format_infer", "format_profiles", "format_reload", "format_status", "format_telemetry"]

SIMULATED = "SIMULATED (figures come from the simulated board, not measurements)"


def _rows(rows: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{label:<12} {value}" for label, value in rows)


def _mhz(hz: int) -> str:
    return f"{hz / 1e6:.0f} MHz"


def format_point(point: p.Point) -> str:
    clocks = ", ".join(f"{name} {_mhz(hz)}" for name, hz in sorted(point.setpoints_hz.items()))
    return f"{point.mapping.unit} x{point.mapping.threads} threads, k={point.k}" + (f", {clocks}" if clocks else "")


def _figure(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.2f} {unit}"


def _estimates(predicted: p.Estimate, measured: p.Estimate | None) -> list[tuple[str, str]]:
    def line(field: str, unit: str) -> str:
        text = f"predicted {_figure(getattr(predicted, field), unit)}"
        return text + (f", measured {_figure(getattr(measured, field), unit)}" if measured else "")

    rows = [("latency", line("latency_ms", "ms")), ("energy", line("energy_mj", "mJ"))]
    if predicted.accuracy is not None:
        rows.append(("accuracy", f"predicted {predicted.accuracy:.3f}"))
    return rows


def _budget_verdict(met: bool | None, infeasible: bool) -> str:
    if infeasible:
        return "infeasible: no operating point meets it; this is the best effort"
    if met is None:
        return "predicted to be met"
    return "met" if met else "NOT met (feasible on paper; the measurement missed it)"


def _tensor(name: str, array: np.ndarray) -> str:
    argmax = f"  argmax {int(np.argmax(array))}" if array.size and array.dtype.kind in "fiu" else ""
    return f"{name}  {array.dtype} {tuple(array.shape)}{argmax}"


def format_infer(result: InferResult) -> str:
    rows = [("simulated", SIMULATED)] if result.simulated else []
    rows += [("point", format_point(result.point)), *_estimates(result.predicted, result.measured)]
    if result.total_ms is not None:  # what budget_met compares: arrival to reply, not the run alone
        rows.append(("end to end", f"{result.total_ms:.3f} ms (queueing, deciding, DVFS writes and the run)"))
    rows.append(("budget", _budget_verdict(result.budget_met, result.budget_infeasible)))
    rows += [("output", _tensor(name, array)) for name, array in result.outputs.items()]
    return _rows(rows)


def format_advice(advice: Advice) -> str:
    rows = [("simulated", SIMULATED)] if advice.simulated else []
    rows += [("point", format_point(advice.point)), *_estimates(advice.predicted, None)]
    rows.append(("budget", _budget_verdict(None, advice.budget_infeasible)))
    return _rows(rows)


def format_status(status: p.StatusReply) -> str:
    rows = [("simulated", SIMULATED)] if status.simulated else []
    rows += [
        ("daemon", f"{status.server} (protocol {status.v}), up {status.uptime_s:.0f} s, {status.served} served"),
        ("board", status.board),
        ("model", status.model or "none loaded"),
        ("point", format_point(status.point) if status.point else "none yet"),
    ]
    rows += [
        (f"  {name}", f"{_mhz(d.cur_hz)} (limits {_mhz(d.min_hz)}..{_mhz(d.max_hz)})")
        for name, d in sorted(status.domains.items())
    ]
    if status.leases or status.streams:
        rows.append(("applications", f"{status.leases} lease(s) outstanding, {status.streams} stream(s) open"))
    rows.append(("power", _figure(status.total_power_mw, "mW")))
    rows += [(f"  {zone}", f"{temp:.1f} °C") for zone, temp in sorted(status.temps_c.items())]
    rows += [("unavailable", item) for item in status.unavailable]
    return _rows(rows)


def format_profiles(reply: p.ProfilesReply) -> str:
    if not reply.profiles:
        return "no profiles loaded: measure one with `governor profile`"
    lines = []
    for info in reply.profiles:
        active = "*" if info.model == reply.active else " "
        label = "  SIMULATED" if info.simulated else ""
        lines.append(f"{active} {info.model:<20} {info.board:<14} G={info.groups:<3} {info.points} points{label}")
        if info.interface is not None:
            lines += ["    " + line for line in format_interface(info.interface)]
    return "\n".join(lines)


def format_interface(interface: p.ModelInterface) -> list[str]:
    """What a model takes and gives, a line each: the input's shape, dtype and scale, the outputs."""
    lines = []
    for spec in interface.inputs:
        shape = ", ".join(map(str, spec.shape))
        lines.append(f"input   ({shape}) float32, or a batch (N, {shape}) of at most {spec.max_batch}")
        if spec.value_range is not None:
            lines.append(f"        raw values {spec.value_range[0]:g}..{spec.value_range[1]:g}, not normalised")
        lines.append(f"        {spec.scale}")
    for out in interface.outputs:
        classes = ", ".join(out.classes[:12]) + (", ..." if len(out.classes) > 12 else "")
        lines.append(f"output  {out.name!r}: (N, {len(out.classes)}) float32 {out.kind}; classes {classes}")
    return lines


def format_reload(reply: p.ReloadReply) -> str:
    if not reply.loaded:  # a 1.0 daemon re-reads nothing: it resets its learned corrections
        return reply.message or "nothing was re-read from disk"
    return f"reloaded from disk: {', '.join(reply.loaded)}" + (f" ({reply.message})" if reply.message else "")


def format_telemetry(msg: p.Telemetry) -> str:
    head = f"t={msg.t:10.3f} #{msg.seq:<6} {msg.type:<11}"
    tail = "  [simulated]" if msg.simulated else ""
    if isinstance(msg, p.TelemetryInference):
        verdict = "infeasible" if msg.budget_infeasible else ("met" if msg.budget_met else "missed")
        body = (
            f"{msg.id} {format_point(msg.point)}; {_figure(msg.measured.latency_ms, 'ms')}, "
            f"{_figure(msg.measured.energy_mj, 'mJ')}; budget {verdict}"
        )
    elif isinstance(msg, p.TelemetryObservation):
        clocks = " ".join(f"{n}={_mhz(d.cur_hz)}" for n, d in sorted(msg.domains.items()))
        temps = " ".join(f"{z}={c:.1f}°C" for z, c in sorted(msg.temps_c.items()))
        body = f"{clocks} power={_figure(msg.total_power_mw, 'mW')} {temps}".strip()
    else:
        assert isinstance(msg, p.TelemetryEvent)
        reason = f" ({msg.reason.value})" if msg.reason else ""
        body = f"{msg.kind}{reason}: {msg.message}"
    return head + " " + body + tail
