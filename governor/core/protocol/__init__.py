"""The governor wire protocol: versioned messages <-> multipart frames, with no sockets (sans-IO).

Theory of operation
-------------------
A message is a list of frames: one JSON header, then one raw buffer per tensor the header lists
(dtype, shape, byte length). Pickle never appears: a header is plain JSON validated by strict,
frozen pydantic models, and a tensor is bytes plus a numpy dtype string from a short whitelist.
Arrays go out as views of their own memory and come back as views of the received frames, so a
tensor is never copied by this layer.

The transport (ZMQ ROUTER/DEALER, an in-process pair, anything else) only moves frames and adds
its own envelope; everything about meaning lives here, so every transport and every client
language behaves the same. Decoding is total: any byte input either yields a valid message or a
:class:`ProtocolError` whose ``code`` and message tell the sender what to change. The server sends
that error back with ``encode_reply(error.to_reply())``.

Versions are ``MAJOR.MINOR``. Peers of different majors refuse each other's messages with
``unsupported_version`` (naming both versions); a minor version only adds optional fields, and
encoders omit fields at their default, so a newer peer stays readable until it uses a new feature.
The frame layout and every header are specified in docs/protocol.md.
"""

from governor.core.protocol._codec import (
    MAX_HEADER_BYTES,
    MAX_MESSAGE_BYTES,
    Frame,
    build,
    decode_reply,
    decode_request,
    encode_reply,
    encode_request,
)
from governor.core.protocol._errors import ERROR_CODES, ErrorCode, ProtocolError
from governor.core.protocol._memo import HeaderMemo, HeaderTemplates
from governor.core.protocol._messages import (
    DTYPES,
    MAX_BATCH_FRAMES,
    MAX_LEASE_TTL_MS,
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    AcquireRequest,
    AdviseReply,
    AdviseRequest,
    ErrorReply,
    HelloReply,
    HelloRequest,
    InferReply,
    InferRequest,
    LeaseReply,
    Message,
    ProfileNextRequest,
    ProfilesReply,
    ProfilesRequest,
    ProfileTaskReply,
    ReleasedReply,
    ReleaseRequest,
    ReloadReply,
    ReloadRequest,
    Reply,
    Request,
    StatusReply,
    StatusRequest,
    StreamClosedReply,
    StreamCloseRequest,
    StreamOpenRequest,
    StreamReply,
    StreamReportRequest,
    TensorSpec,
    speaks,
)
from governor.core.protocol._models import (
    MAX_DEADLINE_MS,
    MAX_ENERGY_MJ,
    Budget,
    DomainInfo,
    Estimate,
    InputInfo,
    ModelInterface,
    Objective,
    OutputInfo,
    Placement,
    Point,
    ProfileInfo,
)
from governor.core.protocol._telemetry import (
    TELEMETRY_TOPICS,
    Telemetry,
    TelemetryEvent,
    TelemetryInference,
    TelemetryObservation,
    decode_telemetry,
    encode_telemetry,
)
from governor.core.protocol._tensors import MAX_TENSORS

DEFAULT_ENDPOINT = "ipc:///run/governor/governor.sock"
DEFAULT_TELEMETRY_ENDPOINT = "ipc:///run/governor/governor-telemetry.sock"

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_TELEMETRY_ENDPOINT",
    "DTYPES",
    "ERROR_CODES",
    "MAX_BATCH_FRAMES",
    "MAX_DEADLINE_MS",
    "MAX_ENERGY_MJ",
    "MAX_HEADER_BYTES",
    "MAX_LEASE_TTL_MS",
    "MAX_MESSAGE_BYTES",
    "MAX_TENSORS",
    "PROTOCOL_VERSION",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "TELEMETRY_TOPICS",
    "AcquireRequest",
    "AdviseReply",
    "AdviseRequest",
    "Budget",
    "DomainInfo",
    "ErrorCode",
    "ErrorReply",
    "Estimate",
    "Frame",
    "HeaderMemo",
    "HeaderTemplates",
    "HelloReply",
    "HelloRequest",
    "InferReply",
    "InferRequest",
    "InputInfo",
    "LeaseReply",
    "Message",
    "ModelInterface",
    "Objective",
    "OutputInfo",
    "Placement",
    "Point",
    "ProfileInfo",
    "ProfileNextRequest",
    "ProfileTaskReply",
    "ProfilesReply",
    "ProfilesRequest",
    "ProtocolError",
    "ReleaseRequest",
    "ReleasedReply",
    "ReloadReply",
    "ReloadRequest",
    "Reply",
    "Request",
    "StatusReply",
    "StatusRequest",
    "StreamCloseRequest",
    "StreamClosedReply",
    "StreamOpenRequest",
    "StreamReply",
    "StreamReportRequest",
    "Telemetry",
    "TelemetryEvent",
    "TelemetryInference",
    "TelemetryObservation",
    "TensorSpec",
    "build",
    "decode_reply",
    "decode_request",
    "decode_telemetry",
    "encode_reply",
    "encode_request",
    "encode_telemetry",
    "speaks",
]
