"""What the clients reuse between calls: validated requests, encoded headers and decoded replies,
and that reuse never changes what goes on the wire or what a bad argument is told."""

from __future__ import annotations

import numpy as np
import pytest
from governor_client import GovernorError
from governor_client._calls import Calls, advise_call, infer_call

from governor.core import protocol as p

BUDGET = {"energy_mj": None, "min_accuracy": None, "objective": None, "strict": False, "model": None}


def test_repeated_calls_reuse_one_header_and_differ_only_in_the_id():
    calls = Calls()
    first_id, first = calls.encode(advise_call(deadline_ms=5.0, **BUDGET).request)
    second_id, second = calls.encode(advise_call(deadline_ms=5.0, **BUDGET).request)
    assert first_id != second_id
    assert first[0].replace(first_id.encode(), b"") == second[0].replace(second_id.encode(), b"")
    for request_id, frames in ((first_id, first), (second_id, second)):  # what the daemon reads
        msg, _ = p.decode_request(frames)
        assert msg == p.AdviseRequest(id=request_id, budget=p.Budget(deadline_ms=5.0))


def test_a_bad_argument_is_refused_every_time_not_remembered():
    for _ in range(2):
        with pytest.raises(GovernorError, match="deadline_ms"):
            advise_call(deadline_ms=-1.0, **BUDGET)
    with pytest.raises(GovernorError, match="deadline_ms"):
        advise_call(deadline_ms=[5.0], **BUDGET)  # unhashable: validated afresh, still refused


def test_replies_that_differ_only_in_the_id_match_their_own_request():
    calls = Calls()
    reply = p.StatusReply(id="", server="t", board="host", simulated=True, uptime_s=1.0, served=3)
    for n in range(3):
        request_id = f"{calls.prefix}-{n}"
        answer = calls.match(p.encode_reply(reply.model_copy(update={"id": request_id})), request_id)
        assert answer is not None and answer[0].id == request_id
    stale = p.encode_reply(reply.model_copy(update={"id": f"{calls.prefix}-1"}))
    assert calls.match(stale, f"{calls.prefix}-2") is None  # a reply to an abandoned attempt is dropped


def test_an_id_that_could_break_a_header_is_refused_not_spliced_in():
    calls = Calls(prefix='x"y')
    with pytest.raises(GovernorError, match="request id"):
        calls.encode(advise_call(deadline_ms=5.0, **BUDGET).request)


def test_infer_headers_are_reused_per_input_shape_and_the_arrays_still_travel():
    calls = Calls()
    request = infer_call(np.zeros((1, 4), np.float32), deadline_ms=5.0, **BUDGET)
    for value in (1.0, 2.0):
        request_id, frames = calls.encode(request.request, {"x": np.full((1, 4), value, np.float32)})
        msg, arrays = p.decode_request(frames)
        assert msg.id == request_id and arrays["x"].tolist() == [[value] * 4]
    _, frames = calls.encode(request.request, {"x": np.zeros((2, 4), np.float32)})  # another shape
    assert p.decode_request(frames)[1]["x"].shape == (2, 4)
    assert len(calls._templates) == 2
