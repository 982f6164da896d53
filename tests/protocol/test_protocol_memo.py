"""HeaderMemo: a header identical to a checked one but for its id skips the parse, and nothing else does."""

from __future__ import annotations

import numpy as np
import pytest
from protocol_samples import POINT, PREDICTED

from governor.core import protocol as p
from governor.core.protocol import _codec


def frames_of(msg, tensors=None):
    return [bytes(f) for f in p.encode_request(msg, tensors)]


def count_parses(monkeypatch):
    calls = []
    real = _codec.parse_header
    monkeypatch.setattr(_codec, "parse_header", lambda raw: calls.append(1) or real(raw))
    return calls


def test_the_same_request_with_another_id_is_decoded_without_parsing(monkeypatch):
    memo, parses = p.HeaderMemo(), count_parses(monkeypatch)
    budget = p.Budget(deadline_ms=5.0)
    first, _ = p.decode_request(frames_of(p.AdviseRequest(id="c-1", budget=budget)), memo=memo)
    again, _ = p.decode_request(frames_of(p.AdviseRequest(id="c-2", budget=budget)), memo=memo)
    assert len(parses) == 1 and len(memo) == 1
    assert again.id == "c-2" and first.id == "c-1"
    assert again == first.model_copy(update={"id": "c-2"})


def test_any_other_difference_is_decoded_in_full(monkeypatch):
    memo, parses = p.HeaderMemo(), count_parses(monkeypatch)
    p.decode_request(frames_of(p.AdviseRequest(id="c-1", budget=p.Budget(deadline_ms=5.0))), memo=memo)
    other, _ = p.decode_request(frames_of(p.AdviseRequest(id="c-2", budget=p.Budget(deadline_ms=6.0))), memo=memo)
    assert len(parses) == 2 and other.budget.deadline_ms == 6.0


def test_an_id_outside_the_protocol_pattern_is_never_spliced_in():
    memo = p.HeaderMemo()
    good = frames_of(p.AdviseRequest(id="c-1", budget=p.Budget(deadline_ms=5.0)))
    p.decode_request(good, memo=memo)
    bad = [good[0].replace(b'"id":"c-1"', b'"id":"c 2"')]
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_request(bad, memo=memo)
    assert exc.value.code == "bad_request" and "id" in exc.value.message


def test_tensor_frames_are_still_checked_when_the_header_is_known():
    memo = p.HeaderMemo()
    x = np.zeros((1, 1, 8, 8), np.float32)
    p.decode_request(frames_of(p.InferRequest(id="c-1", budget=p.Budget(deadline_ms=5.0)), {"x": x}), memo=memo)
    frames = frames_of(p.InferRequest(id="c-2", budget=p.Budget(deadline_ms=5.0)), {"x": x})
    msg, arrays = p.decode_request(frames, memo=memo)
    assert msg.id == "c-2" and arrays["x"].shape == (1, 1, 8, 8)
    with pytest.raises(p.ProtocolError) as exc:
        p.decode_request([frames[0], frames[1][:-4]], memo=memo)  # a buffer short of its spec
    assert exc.value.request_id == "c-2"
    with pytest.raises(p.ProtocolError, match="0 buffer frames follow"):
        p.decode_request([frames[0]], memo=memo)  # the header names a tensor the message lacks


def test_headers_in_another_layout_and_error_replies_are_not_kept():
    memo = p.HeaderMemo()
    reordered = b'{"type":"status","v":"1.0","id":"c-1"}'
    msg, _ = p.decode_request([reordered], memo=memo)
    assert msg.type == "status" and len(memo) == 0
    error = p.encode_reply(p.ErrorReply(id="c-1", code="unavailable", message="busy"))
    p.decode_reply(error, memo=memo)
    assert len(memo) == 0


def test_the_memo_is_bounded_and_forgets_the_oldest():
    memo = p.HeaderMemo(size=3)
    for i in range(5):
        p.decode_request(frames_of(p.AdviseRequest(id="c-1", budget=p.Budget(deadline_ms=1.0 + i))), memo=memo)
    assert len(memo) == 3


def test_templates_write_byte_for_byte_what_the_encoder_writes():
    templates = p.HeaderTemplates()
    x = np.arange(8, dtype=np.float32).reshape(1, 8)
    request = p.InferRequest(budget=p.Budget(deadline_ms=5.0, objective="max_accuracy"), strict=True)
    for request_id in ("a-1", "a-2", ""):
        frames = templates.encode(request, request_id, {"x": x})
        expected = p.encode_request(request.model_copy(update={"id": request_id}), {"x": x})
        assert [bytes(f) for f in frames] == [bytes(f) for f in expected]
    assert len(templates) == 1
    with pytest.raises(p.ProtocolError, match="request id"):
        templates.encode(request, 'a"1', {"x": x})
    with pytest.raises(p.ProtocolError, match="at least one input tensor"):
        templates.encode(request, "a-3")  # a first encode runs every check of the encoder


def test_a_recalled_message_is_the_model_copy_in_every_respect():
    memo = p.HeaderMemo()
    reply = p.AdviseReply(id="c-1", point=POINT, predicted=PREDICTED, budget_infeasible=False, simulated=True)
    first, _ = p.decode_reply([bytes(f) for f in p.encode_reply(reply)], memo=memo)
    again, _ = p.decode_reply([bytes(f) for f in p.encode_reply(reply.model_copy(update={"id": "c-2"}))], memo=memo)
    expected = first.model_copy(update={"id": "c-2"})
    assert again == expected and again.model_fields_set == expected.model_fields_set
    assert again.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)
    assert [bytes(f) for f in p.encode_reply(again)] == [bytes(f) for f in p.encode_reply(expected)]
    assert first.id == "c-1" and again.point is first.point  # frozen: the fields are shared, not copied
    with pytest.raises(Exception, match="frozen"):
        again.id = "c-3"  # type: ignore[misc]


def test_templates_reuse_the_last_message_object_and_nothing_else():
    templates = p.HeaderTemplates()
    a = p.AdviseRequest(budget=p.Budget(deadline_ms=5.0))
    b = p.AdviseRequest(budget=p.Budget(deadline_ms=6.0))
    for msg in (a, a, b, a):
        frames = templates.encode(msg, "x-1")
        assert [bytes(f) for f in frames] == [bytes(f) for f in p.encode_request(msg.model_copy(update={"id": "x-1"}))]
