"""What the clients reuse between calls: validated requests, encoded headers and decoded replies,
and that reuse never changes what goes on the wire or what a bad argument is told."""

from __future__ import annotations

import pytest
from governor_client import GovernorError
from governor_client._calls import Calls, advise_call

from governor.core import protocol as p

BUDGET = {"energy_mj": None, "min_accuracy": None, "objective": "min_energy", "strict": False, "model": None}


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


def test_an_id_prefix_that_could_break_a_header_is_refused():
    with pytest.raises(ValueError, match="prefix"):
        Calls(prefix='x"y')
