"""Decoding is total: any byte input gives a valid message or a ProtocolError with a known code.

Three generators attack the decoders: raw random frames, byte-level mutations of valid messages
(flips, truncations, dropped/duplicated frames), and structured JSON headers with the right version
but random fields and values, which reach the schema and tensor checks. Whatever decodes must
re-encode to the same message, so a decoded message is always one the protocol could have sent.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from protocol_samples import REPLIES, REQUESTS, TELEMETRY

from governor.core import protocol as p

# About 2,800 examples in all; structured JSON headers cost the most to draw, so they get fewer.
FUZZ = settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_JSON = settings(FUZZ, max_examples=600)
DECODERS = [p.decode_request, p.decode_reply, p.decode_telemetry]
VALID = (
    [p.encode_request(m, t) for m, t in REQUESTS]
    + [p.encode_reply(m, t) for m, t in REPLIES]
    + [p.encode_telemetry(m) for m in TELEMETRY]
)
VALID = [[bytes(f) for f in frames] for frames in VALID]
FIELD_NAMES = sorted(
    {name for cls in (*p.REQUEST_TYPES.values(), *p.REPLY_TYPES.values()) for name in cls.model_fields}
    | {"deadline_ms", "energy_mj", "min_accuracy", "objective", "name", "dtype", "shape", "nbytes", "mapping"}
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["<f4", "|b1", "infer", "min_energy", p.PROTOCOL_VERSION, "a57"]),
)
field_name = st.sampled_from(FIELD_NAMES)
# Two fixed levels of nesting instead of st.recursive: as deep as any header, and far cheaper to draw.
json_inner = json_leaf | st.lists(json_leaf, max_size=4)
json_value = json_inner | st.dictionaries(field_name, json_inner | st.dictionaries(field_name, json_inner), max_size=4)


def check_total(decode, frames) -> None:
    try:
        decoded = decode(frames, max_bytes=4096)
    except p.ProtocolError as exc:
        assert exc.code in p.ERROR_CODES
        assert exc.message
        event(f"{decode.__name__}: {exc.code}")  # pytest --hypothesis-show-statistics shows the mix
        return
    event(f"{decode.__name__}: decoded")
    if decode is p.decode_telemetry:
        assert p.decode_telemetry(p.encode_telemetry(decoded)).model_dump(exclude={"v"}) == decoded.model_dump(
            exclude={"v"}
        )
        return
    msg, arrays = decoded
    encode = p.encode_request if decode is p.decode_request else p.encode_reply
    again, arrays_again = decode(encode(msg, arrays))
    assert again.model_dump(exclude={"v"}) == msg.model_dump(exclude={"v"})
    assert {k: a.tobytes() for k, a in arrays_again.items()} == {k: a.tobytes() for k, a in arrays.items()}


@FUZZ
@given(st.sampled_from(DECODERS), st.lists(st.binary(max_size=300), max_size=5))
def test_protocol_random_frames_never_escape_protocol_error(decode, frames):
    check_total(decode, frames)


@st.composite
def mutated(draw):
    frames = [bytearray(f) for f in draw(st.sampled_from(VALID))]
    for _ in range(draw(st.integers(1, 4))):
        target = frames[draw(st.integers(0, len(frames) - 1))] if frames else bytearray()
        action = draw(st.sampled_from(["flip", "truncate", "insert", "drop_frame", "dup_frame"]))
        if action == "flip" and target:
            at = draw(st.integers(0, len(target) - 1))
            target[at] = draw(st.integers(0, 255))
        elif action == "truncate":
            del target[draw(st.integers(0, len(target))) :]
        elif action == "insert":
            at = draw(st.integers(0, len(target)))
            target[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "drop_frame" and frames:
            frames.pop(draw(st.integers(0, len(frames) - 1)))
        elif action == "dup_frame" and frames:
            frames.append(bytearray(frames[draw(st.integers(0, len(frames) - 1))]))
    return [bytes(f) for f in frames]


@FUZZ
@given(st.sampled_from(DECODERS), mutated())
def test_protocol_mutated_messages_never_escape_protocol_error(decode, frames):
    check_total(decode, frames)


@FUZZ_JSON
@given(
    st.sampled_from([p.decode_request, p.decode_reply]),
    st.sampled_from(sorted({*p.REQUEST_TYPES, *p.REPLY_TYPES})),
    st.dictionaries(field_name, json_value, max_size=6),
    st.lists(st.binary(max_size=64), max_size=3),
)
def test_protocol_structured_headers_reach_the_schema_and_stay_total(decode, kind, fields, buffers):
    header = {**fields, "v": p.PROTOCOL_VERSION, "type": kind}
    check_total(decode, [json.dumps(header).encode(), *buffers])


@FUZZ_JSON
@given(st.sampled_from(range(len(VALID))), st.data())
def test_protocol_valid_header_with_one_field_replaced_stays_total(index, data):
    frames = VALID[index]
    at_header = 1 if len(frames) == 2 and frames[0] in {t.encode() for t in p.TELEMETRY_TOPICS} else 0
    header = json.loads(frames[at_header])
    key = data.draw(st.sampled_from(sorted(header)))
    header[key] = data.draw(json_value)
    mutated_frames = [*frames[:at_header], json.dumps(header).encode(), *frames[at_header + 1 :]]
    for decode in DECODERS:
        check_total(decode, mutated_frames)
