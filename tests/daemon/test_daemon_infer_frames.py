"""The daemon's infer replies written from parts: each decodes to exactly the reply the encoder would write."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from governor.core import protocol as p
from governor.core.decision.optimiser import Decision
from governor.core.types import OperatingPoint, Setpoints
from governor.daemon.replies import InferFrames, estimate


def _decision(accuracy: float = 0.91, infeasible: bool = False, index: int = 3) -> Decision:
    point = OperatingPoint("a57", 4, Setpoints({"cpu-a57": 1_420_800_000, "gpu": 624_750_000}), 2)
    return Decision(point, index, 4.25, 12.5, accuracy, infeasible)


def _built(request_id: str, decision: Decision, output: np.ndarray, *, energy_known: bool, simulated: bool,
           accuracy_known: bool, latency_ms: float, energy_mj: float | None, budget_met: bool,
           total_ms: float | None) -> list[p.Frame]:
    predicted = estimate(decision, energy_known=energy_known, accuracy_known=accuracy_known)
    reply = p.InferReply(id=request_id, point=p.Point.from_operating_point(decision.point), predicted=predicted,
                         measured=p.Estimate(latency_ms=latency_ms, energy_mj=energy_mj, accuracy=predicted.accuracy),
                         budget_met=budget_met, budget_infeasible=decision.infeasible, simulated=simulated,
                         total_ms=total_ms)
    return p.encode_reply(reply, {"output": output})


def _decoded(frames: list[p.Frame]) -> tuple[p.Reply, dict[str, np.ndarray]]:
    return p.decode_reply([memoryview(bytes(f)) for f in frames])


@pytest.mark.parametrize("energy_known,simulated,accuracy_known,energy_mj,budget_met,total_ms,infeasible", list(
    itertools.product((True, False), (True, False), (True, False), (None, 7.125), (True, False), (None, 9.5),
                      (False, True)))[::5])
def test_a_reply_from_parts_decodes_to_the_reply_the_encoder_writes(energy_known, simulated, accuracy_known, energy_mj,
                                                                     budget_met, total_ms, infeasible):
    frames = InferFrames()
    output = np.arange(20, dtype=np.float32).reshape(2, 10) / 7
    decision = _decision(infeasible=infeasible)
    kw = dict(energy_known=energy_known, simulated=simulated, accuracy_known=accuracy_known, latency_ms=3.0625,
              energy_mj=energy_mj, budget_met=budget_met, total_ms=total_ms)
    fast = frames.frames("ab12-7", decision, output=output, **kw)
    assert fast is not None
    (reply, arrays), (want, want_arrays) = _decoded(fast), _decoded(_built("ab12-7", decision, output, **kw))
    assert reply == want
    np.testing.assert_array_equal(arrays["output"], want_arrays["output"])


def test_the_fixed_part_is_built_once_per_decision_and_numbers_keep_their_value():
    frames = InferFrames()
    output = np.zeros((1, 10), dtype=np.float32)
    for latency in (1e-6, 0.1 + 0.2, 1234.5678901234, p.MAX_DEADLINE_MS):
        fast = frames.frames("x-1", _decision(), output=output, energy_known=True, simulated=False,
                             accuracy_known=True, latency_ms=latency, energy_mj=None, budget_met=True, total_ms=latency)
        reply, _ = _decoded(fast)  # type: ignore[arg-type]
        assert reply.measured.latency_ms == latency and reply.total_ms == latency
    assert len(frames) == 1
    point, predicted = frames.point(_decision()), estimate(_decision(), energy_known=True, accuracy_known=True)
    assert point.k == 2 and predicted.latency_ms == 4.25 and predicted.energy_mj == 12.5


def test_a_prediction_that_moves_with_learning_keeps_one_cached_point():
    # The cache was keyed by the predicted numbers too, which every learned residual moves: it missed on
    # every infer, and the point and prediction were built and encoded again each time.
    frames, output = InferFrames(), np.zeros((1, 10), dtype=np.float32)
    for latency in (4.25, 4.3125, 5.0):
        decision = Decision(_decision().point, 3, latency, latency * 3, 0.91, False)
        fast = frames.frames("x-1", decision, output=output, energy_known=True, simulated=False, accuracy_known=True,
                             latency_ms=1.0, energy_mj=None, budget_met=True, total_ms=None)
        reply, _ = _decoded(fast)  # type: ignore[arg-type]
        assert reply.predicted == p.Estimate(latency_ms=latency, energy_mj=latency * 3, accuracy=0.91)
    assert len(frames) == 1


@pytest.mark.parametrize("output,numbers", [
    (np.zeros((1, 10), dtype=np.float32)[:, ::2], {}),  # not contiguous
    (np.zeros((1, 10), dtype=np.complex64), {}),  # a dtype the protocol does not carry
    ([0.0, 1.0], {}),  # not an array
    (np.zeros((1, 10), dtype=np.float32), {"latency_ms": float("nan")}),
    (np.zeros((1, 10), dtype=np.float32), {"energy_mj": -1.0}),
    (np.zeros((1, 10), dtype=np.float32), {"total_ms": p.MAX_DEADLINE_MS * 2}),
])
def test_anything_unusual_is_left_to_the_full_encoder(output, numbers):
    kw = dict(energy_known=True, simulated=False, accuracy_known=True, latency_ms=1.0, energy_mj=None,
              budget_met=True, total_ms=None)
    kw.update(numbers)
    assert InferFrames().frames("x-1", _decision(), output=output, **kw) is None
