"""Prometheus metrics for the daemon (off by default; ``[metrics] enabled = true`` turns them on).

The daemon calls four methods and never checks whether metrics are on: :func:`open_metrics` gives
a :class:`PrometheusMetrics` when enabled and prometheus-client imports, else a :class:`NullMetrics`
whose methods do nothing (one warning says how to install the extra). prometheus-client is imported
lazily, only here. Every family is named ``governor_*`` in base units (seconds, joules, watts, hertz,
°C); inputs arrive in the daemon's units (ms, mJ, mW, Hz) and are converted once, here. Labels are
bounded: request kinds and outcomes are closed sets, domains/rails/zones/units come from the board
catalogue, and nothing carries a request id. Measurement families carry ``simulated="true|false"``
so simulated figures are never mistaken for measured ones. A rail, zone or domain missing from a
sweep has its series removed rather than left showing a stale value.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterable, Mapping
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from governor.core.types import Observation, OperatingPoint

__all__ = ["KINDS", "OUTCOMES", "Metrics", "MetricsError", "NullMetrics", "PrometheusMetrics", "open_metrics"]

log = logging.getLogger(__name__)

KINDS = ("hello", "infer", "advise", "status", "profiles", "reload", "acquire", "release", "other")
OUTCOMES = ("met", "missed", "infeasible", "rejected", "error")
INSTALL_HINT = 'pip install "dnn-governor[metrics]" (or: pip install prometheus-client)'
_LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
_ENERGY_BUCKETS_J = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
_ERROR_BUCKETS = (-0.5, -0.2, -0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


class MetricsError(OSError):
    """The metrics endpoint cannot be served (an OSError, like the bind failure behind it); says what to do."""


class Metrics(Protocol):
    """What the daemon calls; both implementations below satisfy it."""

    port: int | None

    def request(self, kind: str, outcome: str) -> None: ...

    def decision(self, point: OperatingPoint, predicted_latency_ms: float, measured_latency_ms: float | None,
                 predicted_energy_mj: float | None, measured_energy_mj: float | None) -> None: ...

    def observation(self, obs: Observation) -> None: ...

    def close(self) -> None: ...


class NullMetrics:
    """Metrics switched off: every call does nothing."""

    port: int | None = None

    def start(self, host: str, port: int) -> int | None:
        return None

    def request(self, kind: str, outcome: str) -> None:
        pass

    def decision(self, point: OperatingPoint, predicted_latency_ms: float, measured_latency_ms: float | None,
                 predicted_energy_mj: float | None, measured_energy_mj: float | None) -> None:
        pass

    def observation(self, obs: Observation) -> None:
        pass

    def close(self) -> None:
        pass


def open_metrics(enabled: bool, host: str, port: int, *, board: str, simulated: bool) -> Metrics:
    """Started metrics when enabled and installed; otherwise the null object (with one warning)."""
    if not enabled:
        return NullMetrics()
    try:
        metrics = PrometheusMetrics(board=board, simulated=simulated)
    except ImportError:
        log.warning("[metrics] enabled = true but prometheus-client is not installed; metrics are off. "
                    "Install it: %s", INSTALL_HINT)
        return NullMetrics()
    metrics.start(host, port)
    return metrics


class PrometheusMetrics:
    """The families, in a private registry (so several instances never collide, e.g. in tests)."""

    def __init__(self, *, board: str, simulated: bool, registry: Any = None) -> None:
        import prometheus_client as pc

        self.registry = registry if registry is not None else pc.CollectorRegistry()
        self.port: int | None = None
        self._server: WSGIServer | None = None
        self._sim = "true" if simulated else "false"
        self._seen: dict[str, set[tuple[str, ...]]] = {}
        reg, sim = self.registry, ("simulated",)
        pc.ProcessCollector(namespace="governor", registry=reg)
        pc.Info("governor_board", "the board the daemon drives", registry=reg).info(
            {"board": board, "simulated": self._sim})
        self.requests = pc.Counter("governor_requests", "requests by kind and outcome", ("kind", "outcome"),
                                   registry=reg)
        self.decisions = pc.Counter("governor_decisions", "operating points chosen, by compute unit",
                                    ("unit", *sim), registry=reg)
        self.point_groups = pc.Gauge("governor_point_groups", "active channel groups k of the last point",
                                     sim, registry=reg)
        self.point_threads = pc.Gauge("governor_point_threads", "threads of the last point", sim, registry=reg)
        self.setpoint = pc.Gauge("governor_setpoint_hertz", "last requested frequency per domain",
                                 ("domain", *sim), registry=reg)
        self.latency = pc.Histogram("governor_inference_latency_seconds", "measured latency per inference",
                                    sim, buckets=_LATENCY_BUCKETS_S, registry=reg)
        self.energy = pc.Histogram("governor_inference_energy_joules", "measured energy per inference",
                                   sim, buckets=_ENERGY_BUCKETS_J, registry=reg)
        self.latency_error = pc.Histogram("governor_latency_prediction_error_ratio",
                                          "(measured - predicted) / predicted latency", sim,
                                          buckets=_ERROR_BUCKETS, registry=reg)
        self.energy_error = pc.Histogram("governor_energy_prediction_error_ratio",
                                         "(measured - predicted) / predicted energy", sim,
                                         buckets=_ERROR_BUCKETS, registry=reg)
        self._observation_families(pc)

    def _observation_families(self, pc: Any) -> None:
        reg, sim = self.registry, ("simulated",)
        self.rail_power = pc.Gauge("governor_rail_power_watts", "power per rail", ("rail", *sim), registry=reg)
        self.board_power = pc.Gauge("governor_board_power_watts", "total board power (catalogue's power_total)",
                                    sim, registry=reg)
        self.temperature = pc.Gauge("governor_temperature_celsius", "temperature per thermal zone",
                                    ("zone", *sim), registry=reg)
        self.freq = {limit: pc.Gauge(f"governor_domain_{limit}_hertz", f"{limit} frequency per DVFS domain",
                                     ("domain", *sim), registry=reg) for limit in ("cur", "min", "max")}
        self.util = pc.Gauge("governor_utilization_ratio", "busy fraction per compute unit", ("unit", *sim),
                             registry=reg)
        self.unavailable = pc.Gauge("governor_sensors_unavailable", "sensors/actuators that failed the last sweep",
                                    sim, registry=reg)

    def start(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (port 0 picks a free one) from a daemon thread; returns the port."""
        from prometheus_client import make_wsgi_app

        try:
            server_class = _ThreadingServer6 if ":" in host else _ThreadingServer
            self._server = make_server(host, port, make_wsgi_app(self.registry), server_class, _QuietHandler)
        except OSError as exc:
            raise MetricsError(f"cannot serve metrics on {host}:{port}: {exc.strerror}; "
                               "choose another [metrics] port or set enabled = false") from exc
        self.port = int(self._server.server_port)
        threading.Thread(target=self._server.serve_forever, name="governor-metrics", daemon=True).start()
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self.port

    def request(self, kind: str, outcome: str) -> None:
        """Count one answered request. ``outcome``: met|missed|infeasible (infer: the budget), rejected (an
        error reply the client caused: bad_request, too_large, unavailable...), error (internal); any other
        request answered normally counts as met. Unknown kinds count as "other"."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        self.requests.labels(kind if kind in KINDS else "other", outcome).inc()

    def decision(self, point: OperatingPoint, predicted_latency_ms: float, measured_latency_ms: float | None,
                 predicted_energy_mj: float | None, measured_energy_mj: float | None) -> None:
        """Record one chosen point and, when it ran, what was measured against what was predicted (ms, mJ)."""
        sim = self._sim
        self.decisions.labels(point.unit, sim).inc()
        self.point_groups.labels(sim).set(point.groups)
        self.point_threads.labels(sim).set(point.threads)
        self._replace(self.setpoint, "setpoint", {(d, sim): hz for d, hz in point.setpoints.hz.items()})
        if measured_latency_ms is not None:
            self.latency.labels(sim).observe(measured_latency_ms / 1e3)
            _observe_error(self.latency_error.labels(sim), predicted_latency_ms, measured_latency_ms)
        if measured_energy_mj is not None:
            self.energy.labels(sim).observe(measured_energy_mj / 1e3)
            _observe_error(self.energy_error.labels(sim), predicted_energy_mj, measured_energy_mj)

    def observation(self, obs: Observation) -> None:
        """Publish one sensor sweep: rails and total (mW -> W), zones (°C), clocks (Hz), load (0..1)."""
        sim = "true" if obs.simulated else "false"
        self._replace(self.rail_power, "rail", {(r, sim): mw / 1e3 for r, mw in obs.power_mw.items()})
        self._replace(self.temperature, "zone", {(z, sim): c for z, c in obs.temps_c.items()})
        self._replace(self.util, "util", {(u, sim): f for u, f in obs.util.items()})
        for limit, gauge in self.freq.items():
            self._replace(gauge, limit, {(d, sim): getattr(r, f"{limit}_hz") for d, r in obs.domains.items()})
        total: dict[tuple[str, ...], float] = {} if obs.total_power_mw is None else {(sim,): obs.total_power_mw / 1e3}
        self._replace(self.board_power, "total", total)
        self.unavailable.labels(sim).set(len(obs.unavailable))

    def _replace(self, gauge: Any, key: str, values: Mapping[tuple[str, ...], float]) -> None:
        """Set these series and remove the ones this family had last time but not now (no stale values)."""
        for labels in self._seen.get(key, set()) - set(values):
            gauge.remove(*labels)
        for labels, value in values.items():
            gauge.labels(*labels).set(value)
        self._seen[key] = set(values)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _observe_error(histogram: Any, predicted: float | None, measured: float) -> None:
    if predicted is not None and predicted > 0:
        histogram.observe((measured - predicted) / predicted)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _ThreadingServer6(_ThreadingServer):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Iterable[Any]) -> None:
        """Scrapes every few seconds would flood the journal."""
