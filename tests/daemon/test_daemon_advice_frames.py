"""The daemon's cache of encoded advise replies: a hit is byte for byte the reply it would have built."""

from __future__ import annotations

from governor.core import protocol as p
from governor.core.decision.optimiser import Decision
from governor.core.types import OperatingPoint, Setpoints
from governor.daemon.replies import AdviceFrames, estimate


def _decision(latency_ms: float = 4.25, infeasible: bool = False, index: int = 3) -> Decision:
    point = OperatingPoint("a57", 4, Setpoints({"cpu-a57": 1_420_800_000, "gpu": 624_750_000}), 2)
    return Decision(point, index, latency_ms, 12.5, 0.91, infeasible)


def _built(request_id: str, decision: Decision, *, energy_known: bool, simulated: bool) -> bytes:
    reply = p.AdviseReply(id=request_id, point=p.Point.from_operating_point(decision.point),
                          predicted=estimate(decision, energy_known=energy_known),
                          budget_infeasible=decision.infeasible, simulated=simulated)
    return bytes(p.encode_reply(reply)[0])


def test_a_cached_reply_is_the_reply_built_afresh_with_the_new_id():
    cache = AdviceFrames()
    for request_id in ("ab12-1", "ab12-2", "x:y.z_9-"):
        (frame,) = cache.frames(request_id, _decision(), energy_known=True, simulated=False)
        assert bytes(frame) == _built(request_id, _decision(), energy_known=True, simulated=False)
        reply, _ = p.decode_reply([frame])
        assert reply.id == request_id and reply.point.k == 2
    assert len(cache) == 1


def test_any_field_the_reply_carries_makes_a_new_entry():
    cache = AdviceFrames()
    variants = [_decision(), _decision(latency_ms=4.5), _decision(infeasible=True), _decision(index=4)]
    for d in variants:
        (frame,) = cache.frames("r-1", d, energy_known=True, simulated=False)
        assert bytes(frame) == _built("r-1", d, energy_known=True, simulated=False)
    (frame,) = cache.frames("r-1", _decision(), energy_known=False, simulated=True)
    reply, _ = p.decode_reply([frame])
    assert reply.predicted.energy_mj is None and reply.simulated
    assert len(cache) == 5


def test_the_cache_is_bounded_oldest_first():
    cache = AdviceFrames(size=3)
    for i in range(5):
        cache.frames("r", _decision(latency_ms=1.0 + i), energy_known=True, simulated=False)
    assert len(cache) == 3
