"""Every message survives encode -> decode unchanged, tensors arrive without a copy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from protocol_samples import REPLIES, REQUESTS, TELEMETRY, input_tensors

from governor.core import protocol as p
from governor.core.types import DomainReading, Observation, OperatingPoint, Setpoints


def _without_specs(msg: p.Message) -> p.Message:
    return msg.model_copy(update={"tensors": ()}) if msg.carries_tensors else msg


def _assert_same_tensors(got: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> None:
    assert list(got) == list(sent)
    for name, array in sent.items():
        assert got[name].dtype == array.dtype and got[name].shape == array.shape
        np.testing.assert_array_equal(got[name], array)


@pytest.mark.parametrize(("msg", "tensors"), REQUESTS, ids=lambda v: getattr(v, "type", ""))
def test_protocol_request_round_trip(msg, tensors):
    decoded, arrays = p.decode_request(p.encode_request(msg, tensors))
    assert type(decoded) is type(msg)
    assert _without_specs(decoded) == msg
    _assert_same_tensors(arrays, tensors)


@pytest.mark.parametrize(("msg", "tensors"), REPLIES, ids=lambda v: getattr(v, "type", ""))
def test_protocol_reply_round_trip(msg, tensors):
    decoded, arrays = p.decode_reply(p.encode_reply(msg, tensors))
    assert type(decoded) is type(msg)
    assert _without_specs(decoded) == msg
    _assert_same_tensors(arrays, tensors)


@pytest.mark.parametrize("msg", TELEMETRY, ids=lambda m: m.type)
def test_protocol_telemetry_round_trip_with_topic_frame(msg):
    frames = p.encode_telemetry(msg)
    assert frames[0] == msg.type.encode()
    assert p.decode_telemetry(frames) == msg


def test_protocol_every_type_has_a_round_trip_sample():
    assert {m.type for m, _ in REQUESTS} == set(p.REQUEST_TYPES)
    assert {m.type for m, _ in REPLIES} == set(p.REPLY_TYPES)
    assert {m.type for m in TELEMETRY} == set(p.TELEMETRY_TOPICS)


def test_protocol_decoded_tensor_shares_memory_with_its_frame():
    request, tensors = REQUESTS[1]
    frames = [bytes(f) if i == 0 else bytearray(f) for i, f in enumerate(p.encode_request(request, tensors))]
    _, arrays = p.decode_request(frames)
    frames[1][0:4] = np.float32(99.0).tobytes()  # writing the frame must show through the array
    assert arrays["image"].flat[0] == 99.0
    assert np.shares_memory(arrays["image"], np.frombuffer(frames[1], dtype=np.uint8))


def test_protocol_encoded_frames_are_views_of_the_arrays():
    tensors = input_tensors()
    frames = p.encode_request(REQUESTS[1][0], tensors)
    tensors["image"][0, 0, 0] = -7.0  # the frame is a view, so it sees the change
    assert np.frombuffer(frames[1], dtype=np.float32)[0] == -7.0


def test_protocol_non_contiguous_input_is_sent_in_c_order():
    base = np.arange(12, dtype=np.int32).reshape(3, 4)
    _, arrays = p.decode_request(p.encode_request(p.InferRequest(), {"t": base.T}))
    np.testing.assert_array_equal(arrays["t"], base.T)


def test_protocol_received_arrays_are_read_only_when_frames_are_bytes():
    _, arrays = p.decode_request([bytes(f) for f in p.encode_request(*REQUESTS[1])])
    with pytest.raises(ValueError, match="read-only"):
        arrays["image"][0, 0, 0] = 1


def test_protocol_header_omits_defaults_and_leads_with_version_type_id():
    head = json.loads(p.encode_request(p.AdviseRequest(id="x"))[0])
    assert list(head) == ["v", "type", "id"]
    assert head == {"v": p.PROTOCOL_VERSION, "type": "advise", "id": "x"}


def test_protocol_newer_minor_without_new_fields_is_accepted():
    major = p.PROTOCOL_VERSION.split(".")[0]
    header = json.dumps({"v": f"{major}.99", "type": "status", "id": "n"}).encode()
    msg, _ = p.decode_request([header])
    assert isinstance(msg, p.StatusRequest) and msg.v == f"{major}.99"


def test_protocol_point_converts_to_and_from_the_core_operating_point():
    op = OperatingPoint(unit="gpu", threads=1, setpoints=Setpoints(hz={"gpu": 624_750_000}), groups=2)
    point = p.Point.from_operating_point(op)
    assert point.mapping.unit == "gpu" and point.k == 2 and point.setpoints_hz == {"gpu": 624_750_000}
    assert point.to_operating_point() == op


def test_protocol_telemetry_observation_keeps_the_simulated_label():
    obs = Observation(
        t=3.0,
        domains={"gpu": DomainReading(cur_hz=5, min_hz=1, max_hz=9)},
        power_mw={"VDD_IN": 3000.0},
        simulated=True,
    )
    msg = p.TelemetryObservation.from_observation(obs, seq=4)
    decoded = p.decode_telemetry(p.encode_telemetry(msg))
    assert decoded.simulated is True and decoded.seq == 4
    assert decoded.domains["gpu"] == p.DomainInfo(cur_hz=5, min_hz=1, max_hz=9)


def test_protocol_error_reply_from_a_protocol_error_keeps_code_message_and_id():
    err = p.ProtocolError("too_large", "send less", request_id="r-9")
    reply, _ = p.decode_reply(p.encode_reply(err.to_reply()))
    assert (reply.type, reply.code, reply.message, reply.id) == ("error", "too_large", "send less", "r-9")
