"""Request and reply messages: the JSON header of each multipart message, one class per ``type``.

A reply has the ``type`` of its request, or ``error``. Messages that carry tensors (``infer`` both
ways) list one :class:`TensorSpec` per buffer frame in ``tensors``; the codec fills and checks that
list, so callers build messages without it and pass the arrays separately.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, get_args

from pydantic import Field

from governor.core.protocol._models import (
    MAX_DEADLINE_MS,
    MAX_ENERGY_MJ,
    Budget,
    Celsius,
    DomainInfo,
    Estimate,
    Milliwatts,
    ModelInterface,
    Name,
    Point,
    ProfileInfo,
    Text,
    Wire,
)

__all__ = [
    "DTYPES",
    "MAX_BATCH_FRAMES",
    "MAX_LEASE_TTL_MS",
    "PROTOCOL_VERSION",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "AcquireRequest",
    "AdviseReply",
    "AdviseRequest",
    "ErrorReply",
    "HelloReply",
    "HelloRequest",
    "InferReply",
    "InferRequest",
    "LeaseReply",
    "Message",
    "ProfileNextRequest",
    "ProfileTaskReply",
    "ProfilesReply",
    "ProfilesRequest",
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
    "TensorSpec",
    "speaks",
]

PROTOCOL_VERSION = "1.2"  # MAJOR.MINOR; a minor bump only adds optional fields and new message types
# 1.1 adds the model's interface (hello, profiles) and infer's end-to-end time. A daemon sends a 1.1 field
# only in reply to a request that says 1.1 or later, so a 1.0 client, whose decoder refuses unknown fields,
# keeps working. 1.1 also adds leases (``acquire``, ``release``): an application that runs its own engine
# asks for a point, runs k groups at the clocks the daemon set, and reports what it measured.
# 1.2 adds streams (``stream_open``, ``stream_report``, ``stream_close``; the daemon pushes ``stream``): an
# application with a steady frame rate holds a point that the daemon replaces when it changes.
MAX_LEASE_TTL_MS = 60_000.0  # a lease lives at most a minute: the board is the daemon's again after it
MAX_BATCH_FRAMES = 4096  # frames one stream_report may carry


def speaks(version: str, minor: int) -> bool:
    """True when a peer that wrote ``version`` (``MAJOR.MINOR``, of our major) reads minor ``minor``'s fields."""
    try:
        return int(version.split(".")[1]) >= minor
    except (IndexError, ValueError):
        return False


RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{0,64}$")]
Endpoint = Annotated[str, Field(max_length=512)]
DType = Literal["|b1", "|i1", "|u1", "<i2", "<u2", "<f2", "<i4", "<u4", "<f4", "<i8", "<u8", "<f8"]
DTYPES: tuple[str, ...] = get_args(DType)  # numpy dtype.str, little-endian: both boards and x86 are


class TensorSpec(Wire):
    """Describes one buffer frame: numpy dtype string (little-endian), C-order shape, byte length."""

    name: Name
    dtype: DType
    shape: tuple[Annotated[int, Field(ge=0, le=2**40)], ...] = Field(max_length=32)
    nbytes: int = Field(ge=0)


class Message(Wire):
    """Fields every header has. ``v`` is the sender's protocol version, ``id`` echoes in the reply."""

    v: str = PROTOCOL_VERSION
    id: RequestId = ""
    type: str
    carries_tensors: ClassVar[bool] = False  # buffer frames may follow the header
    requires_tensors: ClassVar[bool] = False  # at least one must


class Request(Message):
    """Base of the requests a client sends."""


class Reply(Message):
    """Base of the replies a daemon sends."""


class HelloRequest(Request):
    """Version handshake; a client sends it once after connecting."""

    type: Literal["hello"] = "hello"
    client: Text = ""


class _Budgeted(Request):
    budget: Budget = Budget()
    strict: bool = Field(default=False, description="reply 'infeasible' instead of a best-effort point")
    model: Name | None = Field(default=None, description="profile to use; None = the daemon's default")


class InferRequest(_Budgeted):
    """Run one inference on the input tensors (at least one) within the budget."""

    type: Literal["infer"] = "infer"
    tensors: tuple[TensorSpec, ...] = ()
    carries_tensors: ClassVar[bool] = True
    requires_tensors: ClassVar[bool] = True


class AdviseRequest(_Budgeted):
    """Return the operating point ``infer`` would choose for this budget, without running."""

    type: Literal["advise"] = "advise"


class AcquireRequest(_Budgeted):
    """Protocol 1.1: choose a point for the budget, set its clocks, and hand the application the k to run on
    its own engine; the board is the application's until it sends ``release`` or the lease expires."""

    type: Literal["acquire"] = "acquire"
    expected_ms: tuple[Annotated[float, Field(gt=0, le=MAX_DEADLINE_MS)], ...] | None = Field(
        default=None, min_length=1, max_length=4096,
        description="the application's own latency per k = 1..G at the board's top clocks, ms; None = the table's")
    ttl_ms: float | None = Field(default=None, gt=0, le=MAX_LEASE_TTL_MS, description=(
        "how long the lease may live after it is granted, ms; None = the daemon's [daemon] lease_ttl_ms"))


class ReleaseRequest(Request):
    """Protocol 1.1: the application ran the k its lease named; what it measured (ms, mJ)."""

    type: Literal["release"] = "release"
    lease_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    latency_ms: float = Field(gt=0, le=MAX_DEADLINE_MS, description="the application's run, as it measured it, ms")
    energy_mj: float | None = Field(default=None, ge=0, le=MAX_ENERGY_MJ, description="its own reading, if any")
    outcome: Literal["ok", "failed"] = "ok"


StreamId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


class StreamOpenRequest(_Budgeted):
    """Protocol 1.2: a stream of frames, one every ``period_ms``, each within the budget (no deadline: the
    period). The daemon answers with a ``stream`` reply once its setpoints are applied, and sends another
    ``stream`` whenever it changes the point; the application reports frames with ``stream_report``."""

    type: Literal["stream_open"] = "stream_open"
    period_ms: float = Field(gt=0, le=MAX_DEADLINE_MS, description="the time between frames, ms")
    expected_ms: tuple[Annotated[float, Field(gt=0, le=MAX_DEADLINE_MS)], ...] | None = Field(
        default=None, min_length=1, max_length=4096,
        description="the application's own latency per k = 1..G at the board's top clocks, ms; None = the table's")
    ttl_ms: float | None = Field(default=None, gt=0, le=MAX_LEASE_TTL_MS, description=(
        "the stream ends when no stream_report arrives for this long, ms; None = the daemon's [daemon] "
        "stream_ttl_ms"))


class StreamReportRequest(Request):
    """Protocol 1.2: frames the application ran at point ``seq`` of its stream (their latencies, ms, as it
    measured them around its engine) and how many failed. Not answered unless it is wrong (an error reply);
    an empty report only keeps the stream alive."""

    type: Literal["stream_report"] = "stream_report"
    stream_id: StreamId
    seq: int = Field(ge=0, le=2**31, description="the stream reply's seq the frames ran at")
    latencies_ms: tuple[Annotated[float, Field(gt=0, le=MAX_DEADLINE_MS)], ...] = Field(
        default=(), max_length=MAX_BATCH_FRAMES)
    failed: int = Field(default=0, ge=0, le=MAX_BATCH_FRAMES, description="frames that did not complete")


class StreamCloseRequest(Request):
    """Protocol 1.2: the stream ends; the clocks go back to the idle policy once no stream holds them."""

    type: Literal["stream_close"] = "stream_close"
    stream_id: StreamId


class ProfileNextRequest(Request):
    """Protocol 1.1, to `governor profile --external`: the application is ready for the next point.
    ``latency_ms`` is its run of the point the previous ``profile_task`` named (None the first time);
    ``failed``: that run did not complete."""

    type: Literal["profile_next"] = "profile_next"
    latency_ms: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_MS)
    failed: bool = False


class StatusRequest(Request):
    type: Literal["status"] = "status"


class ProfilesRequest(Request):
    type: Literal["profiles"] = "profiles"


class ReloadRequest(Request):
    """Re-read the model profiles from disk."""

    type: Literal["reload"] = "reload"


class HelloReply(Reply):
    """The daemon's identity; its ``v`` is the daemon's protocol version."""

    type: Literal["hello"] = "hello"
    server: Text
    board: Name
    simulated: bool
    telemetry_endpoint: Endpoint | None = None
    max_bytes: int = Field(ge=0, description="largest request the daemon accepts, bytes")
    model: Name | None = Field(default=None, description="protocol 1.1: the model infer runs by default")
    interface: ModelInterface | None = Field(default=None, description="protocol 1.1: what that model takes")


class InferReply(Reply):
    """Outputs (tensor frames) plus what was chosen, predicted and measured (ms, mJ)."""

    type: Literal["infer"] = "infer"
    point: Point
    predicted: Estimate
    measured: Estimate
    budget_met: bool
    budget_infeasible: bool = Field(description="no point meets the budget; this is the best effort")
    simulated: bool
    total_ms: float | None = Field(default=None, ge=0, le=MAX_DEADLINE_MS, description=(
        "protocol 1.1: from the request's arrival to its reply, ms: what budget_met compares with deadline_ms"))
    tensors: tuple[TensorSpec, ...] = ()
    carries_tensors: ClassVar[bool] = True


class LeaseReply(Reply):
    """Protocol 1.1: the lease granted; its setpoints are in force (applied and read back) when this is sent."""

    type: Literal["lease"] = "lease"
    lease_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    point: Point
    predicted: Estimate
    expires_in_ms: float = Field(gt=0, le=MAX_LEASE_TTL_MS, description="from this reply until the lease expires")
    budget_infeasible: bool
    simulated: bool


class ReleasedReply(Reply):
    """Protocol 1.1: a lease released; what was measured and whether the budget was met."""

    type: Literal["released"] = "released"
    lease_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
    measured: Estimate = Field(description=(
        "latency_ms: the application's; energy_mj: the daemon's over the lease where it has a power sensor, else "
        "the application's, else None"))
    budget_met: bool
    total_ms: float = Field(ge=0, le=MAX_DEADLINE_MS, description="from the acquire's arrival to the release's, ms")
    simulated: bool


class StreamReply(Reply):
    """Protocol 1.2: the point a stream runs at from now on (its setpoints are in force when this is sent):
    the reply to ``stream_open`` (``id`` its id), and pushed again whenever the point changes."""

    type: Literal["stream"] = "stream"
    stream_id: StreamId
    seq: int = Field(ge=0, le=2**31, description="this point's number in the stream; reports name it")
    point: Point
    predicted: Estimate
    period_ms: float = Field(gt=0, le=MAX_DEADLINE_MS)
    expires_in_ms: float = Field(gt=0, le=MAX_LEASE_TTL_MS, description="report at least this often, ms")
    budget_infeasible: bool
    simulated: bool


class StreamClosedReply(Reply):
    """Protocol 1.2: a stream closed: the frames reported over its life."""

    type: Literal["stream_closed"] = "stream_closed"
    stream_id: StreamId
    frames: int = Field(ge=0, description="frames reported with a latency")
    met: int = Field(ge=0, description="of those, within the deadline per frame")
    failed: int = Field(ge=0, description="frames reported as failed")
    mean_latency_ms: float | None = Field(default=None, ge=0, le=MAX_DEADLINE_MS)


class ProfileTaskReply(Reply):
    """Protocol 1.1, from `governor profile --external`: run ``point.k`` groups once on your engine (its
    setpoints are in force) and send the time with the next ``profile_next``; ``done``: the profile is
    complete (``point`` is None)."""

    type: Literal["profile_task"] = "profile_task"
    done: bool
    point: Point | None = None
    runs: int = Field(ge=0, description="runs reported so far in this session")
    points: int = Field(ge=0, description="operating points measured so far")
    max_points: int = Field(ge=0, description="at most this many points are measured")


class AdviseReply(Reply):
    type: Literal["advise"] = "advise"
    point: Point
    predicted: Estimate
    budget_infeasible: bool
    simulated: bool


class StatusReply(Reply):
    """The daemon's state: board, model, current point, DVFS domains (Hz), power (mW), temperatures (°C)."""

    type: Literal["status"] = "status"
    server: Text
    board: Name
    simulated: bool
    uptime_s: float = Field(ge=0)
    model: Name | None = None
    point: Point | None = None
    domains: dict[Name, DomainInfo] = Field(default_factory=dict, max_length=64)
    total_power_mw: Milliwatts | None = None
    temps_c: dict[Name, Celsius] = Field(default_factory=dict, max_length=256)
    served: int = Field(default=0, ge=0, description="requests answered since start")
    unavailable: tuple[Text, ...] = Field(default=(), description="sensors/actuators failing, with why")
    leases: int = Field(default=0, ge=0, description="protocol 1.2: leases outstanding now")
    streams: int = Field(default=0, ge=0, description="protocol 1.2: streams open now (their clocks are held)")


class ProfilesReply(Reply):
    type: Literal["profiles"] = "profiles"
    profiles: tuple[ProfileInfo, ...] = ()
    active: Name | None = None


class ReloadReply(Reply):
    type: Literal["reload"] = "reload"
    loaded: tuple[Name, ...] = ()
    message: Text = ""


class ErrorReply(Reply):
    """The answer to any request that failed. This shape is frozen across all protocol versions."""

    type: Literal["error"] = "error"
    # A plain string, not ErrorCode: a newer daemon may add codes; older clients treat them as internal.
    code: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")]
    message: Text


REQUEST_TYPES: dict[str, type[Request]] = {
    cls.model_fields["type"].default: cls
    for cls in (HelloRequest, InferRequest, AdviseRequest, StatusRequest, ProfilesRequest, ReloadRequest,
                AcquireRequest, ReleaseRequest, ProfileNextRequest, StreamOpenRequest, StreamReportRequest,
                StreamCloseRequest)
}
REPLY_TYPES: dict[str, type[Reply]] = {
    cls.model_fields["type"].default: cls
    for cls in (HelloReply, InferReply, AdviseReply, StatusReply, ProfilesReply, ReloadReply, LeaseReply,
                ReleasedReply, ProfileTaskReply, StreamReply, StreamClosedReply, ErrorReply)
}
