"""One valid instance of every protocol message, shared by the protocol and client tests."""

from __future__ import annotations

import numpy as np

from governor.core import protocol as p

POINT = p.Point(
    mapping=p.Placement(unit="a57", threads=4),
    setpoints_hz={"cpu-a57": 2_035_200_000, "gpu": 1_300_500_000, "emc": 1_866_000_000},
    k=3,
)
PREDICTED = p.Estimate(latency_ms=12.5, energy_mj=40.0, accuracy=0.71)
MEASURED = p.Estimate(latency_ms=13.1, energy_mj=42.5)
BUDGET = p.Budget(deadline_ms=20.0, energy_mj=50.0, min_accuracy=0.7, objective="max_accuracy")


def input_tensors() -> dict[str, np.ndarray]:
    return {"image": np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4), "mask": np.array([True, False])}


def output_tensors() -> dict[str, np.ndarray]:
    return {"logits": np.linspace(-1, 1, 10, dtype=np.float16)}


REQUESTS: list[tuple[p.Request, dict[str, np.ndarray]]] = [
    (p.HelloRequest(id="c-1", client="governor-client/0.1.0"), {}),
    (p.InferRequest(id="c-2", budget=BUDGET, strict=True, model="resnet-gp"), input_tensors()),
    (p.AdviseRequest(id="c-3", budget=p.Budget(deadline_ms=5)), {}),
    (p.StatusRequest(id="c-4"), {}),
    (p.ProfilesRequest(), {}),
    (p.ReloadRequest(id="c-6"), {}),
    (p.AcquireRequest(id="c-8", budget=BUDGET, model="resnet-gp", expected_ms=(4.5, 8.0), ttl_ms=250.0), {}),
    (p.ReleaseRequest(id="c-9", lease_id="L3f2a9c", latency_ms=7.25, energy_mj=21.5, outcome="failed"), {}),
    (p.ProfileNextRequest(id="c-10"), {}),
    (p.ProfileNextRequest(id="c-11", latency_ms=3.5), {}),
    (p.ProfileNextRequest(id="c-12", failed=True), {}),
    (p.StreamOpenRequest(id="c-13", budget=BUDGET, model="resnet-gp", period_ms=33.3, expected_ms=(4.5, 8.0),
                         ttl_ms=2000.0), {}),
    (p.StreamOpenRequest(id="c-14", period_ms=10.0), {}),
    (p.StreamReportRequest(id="c-15", stream_id="S9a1b", seq=3, latencies_ms=(7.25, 7.5, 6.875), failed=1), {}),
    (p.StreamReportRequest(id="c-16", stream_id="S9a1b", seq=0), {}),
    (p.StreamCloseRequest(id="c-17", stream_id="S9a1b"), {}),
]

REPLIES: list[tuple[p.Reply, dict[str, np.ndarray]]] = [
    (
        p.HelloReply(
            id="c-1",
            server="dnn-governor 0.1.0",
            board="jetson-tx2",
            simulated=True,
            telemetry_endpoint="ipc:///run/governor/governor-telemetry.sock",
            max_bytes=1 << 20,
        ),
        {},
    ),
    (
        p.InferReply(
            id="c-2",
            point=POINT,
            predicted=PREDICTED,
            measured=MEASURED,
            budget_met=False,
            budget_infeasible=True,
            simulated=True,
        ),
        output_tensors(),
    ),
    (p.AdviseReply(id="c-3", point=POINT, predicted=PREDICTED, budget_infeasible=False, simulated=False), {}),
    (
        p.StatusReply(
            id="c-4",
            server="dnn-governor 0.1.0",
            board="jetson-tx2",
            simulated=True,
            uptime_s=12.5,
            model="resnet-gp",
            point=POINT,
            domains={"gpu": p.DomainInfo(cur_hz=114_750_000, min_hz=114_750_000, max_hz=1_300_500_000)},
            total_power_mw=3150.0,
            temps_c={"cpu": 41.5},
            served=7,
            unavailable=("power: ina3221 not found (simulated board)",),
        ),
        {},
    ),
    (
        p.ProfilesReply(
            profiles=(
                p.ProfileInfo(
                    model="resnet-gp", board="jetson-tx2", groups=2, points=480, accuracy=(0.6, 0.7), simulated=True
                ),
            ),
            active="resnet-gp",
        ),
        {},
    ),
    (p.ReloadReply(id="c-6", loaded=("resnet-gp",), message="1 profile"), {}),
    (p.ErrorReply(id="c-7", code="infeasible", message="relax the deadline to >= 14 ms"), {}),
    (
        p.LeaseReply(id="c-8", lease_id="L3f2a9c", point=POINT, predicted=PREDICTED, expires_in_ms=250.0,
                     budget_infeasible=False, simulated=True),
        {},
    ),
    (
        p.ReleasedReply(id="c-9", lease_id="L3f2a9c", measured=MEASURED, budget_met=True, total_ms=9.5,
                        simulated=False),
        {},
    ),
    (p.ProfileTaskReply(id="c-10", done=False, point=POINT, runs=0, points=1, max_points=48), {}),
    (p.ProfileTaskReply(id="c-11", done=True, runs=40, points=12, max_points=48), {}),
    (
        p.StreamReply(id="c-13", stream_id="S9a1b", seq=0, point=POINT, predicted=PREDICTED, period_ms=33.3,
                      expires_in_ms=2000.0, budget_infeasible=False, simulated=True),
        {},
    ),
    (p.StreamClosedReply(id="c-17", stream_id="S9a1b", frames=300, met=298, failed=1, mean_latency_ms=7.5), {}),
    (p.StreamClosedReply(id="c-18", stream_id="S9a1b", frames=0, met=0, failed=0), {}),
]

TELEMETRY: list[p.Telemetry] = [
    p.TelemetryObservation(
        seq=0,
        t=1.5,
        simulated=True,
        domains={"emc": p.DomainInfo(cur_hz=1_866_000_000, min_hz=40_800_000, max_hz=1_866_000_000)},
        power_mw={"VDD_SYS_GPU": 380.0},
        total_power_mw=2900.0,
        temps_c={"gpu": 39.0},
        util={"a57": 0.25},
    ),
    p.TelemetryInference(
        id="c-2",
        seq=1,
        t=1.6,
        simulated=True,
        budget=BUDGET,
        point=POINT,
        predicted=PREDICTED,
        measured=MEASURED,
        budget_met=True,
        budget_infeasible=False,
    ),
    p.TelemetryEvent(seq=2, t=1.7, simulated=False, kind="setpoints", reason="client", message="gpu capped"),
]
