"""Each way a message can be malformed has its error code and a message that says what to change."""

from __future__ import annotations

import json

import numpy as np
import pytest

from governor.core import protocol as p

V = p.PROTOCOL_VERSION
IMAGE = {"name": "image", "dtype": "<f4", "shape": [2, 2], "nbytes": 16}


def header(**fields) -> bytes:
    return json.dumps({"v": V, "id": "r-1", **fields}).encode()


def rejected(frames, decode=p.decode_request, **kw) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        decode(frames, **kw)
    return info.value


@pytest.mark.parametrize(
    ("frames", "fragment"),
    [
        ([], "empty message"),
        ([b"\xff\xfe"], "not valid UTF-8 JSON"),
        ([b'{"v": "1.0", "type": '], "not valid UTF-8 JSON"),
        ([b"[1, 2]"], "must be a JSON object"),
        ([b'{"v": "1.0", "v": "1.0", "type": "status"}'], "duplicate keys"),
        ([b'{"type": "status"}'], "'MAJOR.MINOR'"),
        ([b'{"v": 1, "type": "status"}'], "'MAJOR.MINOR'"),
        ([header(type="launch")], "unknown request type 'launch'"),
        ([header(type="status", verbose=True)], "unknown field 'verbose'"),
        ([header(type="advise", strict="yes")], "strict"),
        ([header(type="advise", budget={"deadline_ms": "20"})], "budget.deadline_ms"),
        ([header(type="advise", budget={"objective": "max_fun"})], "budget.objective"),
        ([header(type="infer", tensors=[])], "at least one input tensor"),
        ([header(type="status"), b"\0" * 4], "carry no tensors"),
        ([header(type="infer", tensors=[IMAGE])], "1 tensors but 0 buffer frames"),
        ([header(type="infer", tensors=[{**IMAGE, "dtype": "|O"}]), b"\0" * 16], "tensors.0.dtype"),
        ([header(type="infer", tensors=[{**IMAGE, "dtype": ">f4"}]), b"\0" * 16], "tensors.0.dtype"),
        ([header(type="infer", tensors=[{**IMAGE, "nbytes": 12}]), b"\0" * 12], "does not match shape"),
        ([header(type="infer", tensors=[IMAGE]), b"\0" * 15], "frame has 15 bytes"),
        ([header(type="infer", tensors=[IMAGE, IMAGE]), b"\0" * 16, b"\0" * 16], "appears twice"),
        ([header(type="infer", tensors=[{**IMAGE, "shape": [-2, -2]}]), b"\0" * 16], "tensors.0.shape"),
        ([header(type="hello", id="has spaces")], "id"),
    ],
)
def test_protocol_malformed_request_is_a_bad_request(frames, fragment):
    err = rejected(frames)
    assert err.code == "bad_request"
    assert fragment in err.message


@pytest.mark.parametrize(
    ("budget", "field"),
    [
        ({"deadline_ms": float("nan")}, "deadline_ms"),
        ({"energy_mj": float("inf")}, "energy_mj"),
        ({"deadline_ms": -5}, "deadline_ms"),
        ({"deadline_ms": 0}, "deadline_ms"),
        ({"energy_mj": -0.1}, "energy_mj"),
        ({"min_accuracy": 1.5}, "min_accuracy"),
        ({"deadline_ms": 1e300}, "deadline_ms"),
        ({"energy_mj": 1e12}, "energy_mj"),
    ],
)
def test_protocol_nan_negative_or_huge_budget_is_rejected(budget, field):
    # json.dumps writes NaN/Infinity literals; the decoder must refuse them like any bad number.
    err = rejected([header(type="advise", budget=budget)])
    assert err.code == "bad_request"
    assert field in err.message or "not a number the protocol accepts" in err.message


def test_protocol_budget_built_locally_names_the_bad_field():
    with pytest.raises(p.ProtocolError) as info:
        p.build(p.Budget, deadline_ms=-1)
    assert info.value.code == "bad_request" and "deadline_ms" in info.value.message


def test_protocol_request_id_is_kept_on_errors_so_replies_can_be_matched():
    assert rejected([header(type="status", extra=1)]).request_id == "r-1"
    assert rejected([b'{"v": "1.0", "id": "bad id!", "type": "nope"}']).request_id == ""


@pytest.mark.parametrize("theirs", ["0.9", "2.0", "17.3"])
def test_protocol_other_major_version_is_unsupported_and_names_both(theirs):
    frame = json.dumps({"v": theirs, "type": "anything-at-all", "future_field": 1}).encode()
    for decode in (p.decode_request, p.decode_reply):
        err = rejected([frame], decode)
        assert err.code == "unsupported_version"
        assert theirs in err.message and V in err.message and "upgrade the" in err.message


def test_protocol_version_advice_names_the_older_side():
    newer_client = rejected([json.dumps({"v": "99.0", "type": "status"}).encode()])
    assert "upgrade the daemon" in newer_client.message
    older_daemon = rejected([json.dumps({"v": "0.1", "type": "status"}).encode()], p.decode_reply)
    assert "upgrade the daemon" in older_daemon.message
    newer_daemon = rejected([json.dumps({"v": "99.0", "type": "status"}).encode()], p.decode_reply)
    assert "upgrade the client" in newer_daemon.message


def test_protocol_oversized_message_is_too_large_before_parsing():
    err = rejected([b"not even json", b"\0" * 1000], max_bytes=1000)
    assert err.code == "too_large" and "1013 bytes" in err.message and "1000" in err.message


def test_protocol_oversized_header_or_too_many_frames_is_too_large():
    assert rejected([b" " * (p.MAX_HEADER_BYTES + 1)]).code == "too_large"
    assert rejected([header(type="status")] + [b""] * (p.MAX_TENSORS + 1)).code == "too_large"


def test_protocol_non_buffer_frame_is_a_bad_request():
    assert rejected([header(type="status"), "text"]).code == "bad_request"


def test_protocol_reply_with_request_type_fields_is_rejected():
    err = rejected([header(type="infer", tensors=[])], p.decode_reply)
    assert err.code == "bad_request" and "point" in err.message


def test_protocol_telemetry_topic_must_match_header():
    frames = [b"event", header(type="observation", seq=0, t=0.0, simulated=True)]
    assert "does not match" in rejected(frames, p.decode_telemetry).message
    assert rejected(frames[1:], p.decode_telemetry).code == "bad_request"


@pytest.mark.parametrize(
    "value",
    [np.zeros(2, dtype=np.complex64), np.array(["a"]), np.zeros(2, dtype=">f4"), np.array([object()])],
)
def test_protocol_unsupported_dtype_is_refused_on_encode_with_a_fix(value):
    with pytest.raises(p.ProtocolError) as info:
        p.encode_request(p.InferRequest(), {"x": value})
    assert info.value.code == "bad_request" and "astype" in info.value.message


def test_protocol_encode_refuses_tensors_on_messages_without_them_and_infer_without_inputs():
    with pytest.raises(p.ProtocolError, match="carry no tensors"):
        p.encode_request(p.StatusRequest(), {"x": np.zeros(1)})
    with pytest.raises(p.ProtocolError, match="at least one"):
        p.encode_request(p.InferRequest())
