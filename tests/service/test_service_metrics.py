"""Prometheus metrics: names, units, bounded labels, no stale series, the null object, one local scrape."""

from __future__ import annotations

import logging
import sys
import urllib.request

import pytest

from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints
from governor.daemon.metrics import MetricsError, NullMetrics, PrometheusMetrics, open_metrics

pytest.importorskip("prometheus_client", reason="prometheus-client is in the dev extra: pip install -e '.[dev]'")

POINT = OperatingPoint(unit="gpu", threads=2, setpoints=Setpoints({"gpu": 1_300_500_000, "emc": 1_866_000_000}),
                       groups=3)


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def sweep(t, rails, total, simulated=True):
    return Observation(t=t, domains={"gpu": DomainReading(1_300_500_000, 114_750_000, 1_300_500_000)},
                       power_mw=rails, total_power_mw=total, temps_c={"GPU-therm": 41.5},
                       util={"gpu": 0.8}, simulated=simulated, unavailable=("emc: debugfs not mounted",))


@pytest.fixture
def metrics():
    return PrometheusMetrics(board="jetson-tx2", simulated=True)


def test_requests_are_counted_by_kind_and_closed_outcome(metrics):
    metrics.request("infer", "met")
    metrics.request("infer", "met")
    metrics.request("frobnicate", "rejected")  # unknown kinds fold into "other": the label set stays bounded
    assert value(metrics, "governor_requests_total", kind="infer", outcome="met") == 2
    assert value(metrics, "governor_requests_total", kind="other", outcome="rejected") == 1
    with pytest.raises(ValueError, match="outcome"):
        metrics.request("infer", "fine")
    assert value(metrics, "governor_board_info", board="jetson-tx2", simulated="true") == 1


def test_decision_records_point_and_prediction_error_in_base_units(metrics):
    metrics.decision(POINT, predicted_latency_ms=10.0, measured_latency_ms=12.0,
                     predicted_energy_mj=50.0, measured_energy_mj=40.0)
    sim = {"simulated": "true"}
    assert value(metrics, "governor_decisions_total", unit="gpu", **sim) == 1
    assert value(metrics, "governor_point_groups", **sim) == 3
    assert value(metrics, "governor_setpoint_hertz", domain="emc", **sim) == 1_866_000_000
    assert value(metrics, "governor_inference_latency_seconds_sum", **sim) == pytest.approx(0.012)
    assert value(metrics, "governor_inference_latency_seconds_bucket", le="0.01", **sim) == 0
    assert value(metrics, "governor_inference_latency_seconds_bucket", le="0.02", **sim) == 1
    assert value(metrics, "governor_inference_energy_joules_sum", **sim) == pytest.approx(0.040)
    # signed errors (the bias shows): +20 % latency, -20 % energy; negative buckets mean no _sum is exported
    latency_error, energy_error = "governor_latency_prediction_error_ratio", "governor_energy_prediction_error_ratio"
    assert value(metrics, f"{latency_error}_bucket", le="0.1", **sim) == 0
    assert value(metrics, f"{latency_error}_bucket", le="0.2", **sim) == 1
    assert value(metrics, f"{energy_error}_bucket", le="-0.5", **sim) == 0
    assert value(metrics, f"{energy_error}_bucket", le="-0.2", **sim) == 1
    metrics.decision(OperatingPoint("a57", 4, Setpoints({"cpu-a57": 2_035_200_000}), 1), 5.0, None, None, None)
    assert value(metrics, "governor_setpoint_hertz", domain="emc", **sim) is None  # not part of this point
    assert value(metrics, "governor_inference_latency_seconds_count", **sim) == 1  # an advice measures nothing


def test_observation_converts_units_and_drops_series_that_vanish(metrics):
    metrics.observation(sweep(1.0, {"VDD_IN": 5120.0, "VDD_SYS_GPU": 1530.0}, 5120.0))
    sim = {"simulated": "true"}
    assert value(metrics, "governor_rail_power_watts", rail="VDD_IN", **sim) == pytest.approx(5.12)
    assert value(metrics, "governor_board_power_watts", **sim) == pytest.approx(5.12)
    assert value(metrics, "governor_temperature_celsius", zone="GPU-therm", **sim) == 41.5
    assert value(metrics, "governor_domain_min_hertz", domain="gpu", **sim) == 114_750_000
    assert value(metrics, "governor_utilization_ratio", unit="gpu", **sim) == 0.8
    assert value(metrics, "governor_sensors_unavailable", **sim) == 1
    metrics.observation(sweep(2.0, {"VDD_IN": 4000.0}, None))
    assert value(metrics, "governor_rail_power_watts", rail="VDD_SYS_GPU", **sim) is None
    assert value(metrics, "governor_board_power_watts", **sim) is None
    assert value(metrics, "governor_rail_power_watts", rail="VDD_IN", **sim) == pytest.approx(4.0)


def test_measured_sweeps_are_labelled_measured(metrics):
    metrics.observation(sweep(1.0, {"VDD_IN": 3000.0}, 3000.0, simulated=False))
    assert value(metrics, "governor_rail_power_watts", rail="VDD_IN", simulated="false") == pytest.approx(3.0)
    assert value(metrics, "governor_rail_power_watts", rail="VDD_IN", simulated="true") is None


def test_serves_one_scrape_on_localhost_and_refuses_a_taken_port():
    metrics = open_metrics(True, "127.0.0.1", 0, board="host", simulated=False)
    try:
        metrics.request("status", "met")
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        assert 'governor_requests_total{kind="status",outcome="met"} 1.0' in text
        assert "governor_process_resident_memory_bytes" in text or sys.platform != "linux"
        with pytest.raises(MetricsError, match="another \\[metrics\\] port"):
            PrometheusMetrics(board="host", simulated=False).start("127.0.0.1", metrics.port)
    finally:
        metrics.close()


def test_disabled_or_missing_library_gives_the_null_object(monkeypatch, caplog):
    assert isinstance(open_metrics(False, "127.0.0.1", 0, board="host", simulated=False), NullMetrics)
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now raises ImportError
    with caplog.at_level(logging.WARNING, logger="governor.daemon.metrics"):
        null = open_metrics(True, "127.0.0.1", 0, board="host", simulated=False)
    assert isinstance(null, NullMetrics) and null.port is None
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "pip install" in caplog.text and "dnn-governor[metrics]" in caplog.text
    null.request("infer", "met")
    null.decision(POINT, 1.0, 1.0, None, None)
    null.observation(sweep(1.0, {}, None))
    null.close()
