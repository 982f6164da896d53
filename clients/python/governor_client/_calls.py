"""What the sync and async clients share, without I/O: building requests, reading replies, results.

Each request gets a fresh id (a random per-client prefix plus a counter); a reply is accepted only
if it echoes that id (or carries none, which a daemon does when it could not read the request).
Anything else is a stale reply to an earlier, abandoned attempt and is dropped.
"""

from __future__ import annotations

import functools
import itertools
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

from governor.core import protocol as p
from governor_client._errors import GovernorError

__all__ = ["Advice", "Call", "Calls", "InferResult", "Lease", "ProfileTask", "Released", "acquire_call", "advise_call",
           "infer_call", "named_inputs", "plain_call", "profile_next_call", "release_call", "stream_open_call"]

R = TypeVar("R", bound=p.Reply)
T = TypeVar("T")
Q = TypeVar("Q", bound=p.Request)



@dataclass(frozen=True)
class InferResult:
    """An inference: outputs (views of the received reply frames, not copies), the operating point chosen,
    predicted and measured latency (ms) and energy (mJ), whether the budget was met, and whether
    any of it was simulated. ``measured.latency_ms`` is the run alone; ``total_ms`` (a daemon of protocol
    1.1 or later, else None) is the daemon's end-to-end time, arrival to reply, that ``budget_met`` compares
    with the deadline."""

    outputs: Mapping[str, np.ndarray]
    point: p.Point
    predicted: p.Estimate
    measured: p.Estimate
    budget_met: bool
    budget_infeasible: bool
    simulated: bool
    request_id: str = ""
    total_ms: float | None = None

    @property
    def output(self) -> np.ndarray:
        """The first (usually only) output."""
        if not self.outputs:
            raise GovernorError("internal", "the daemon returned no output tensors")
        return next(iter(self.outputs.values()))

    def to_dict(self) -> dict[str, Any]:
        outputs = {
            n: {"dtype": a.dtype.str, "shape": list(a.shape), "values": a.tolist()} for n, a in self.outputs.items()
        }
        return {**_fields(self, exclude="outputs"), "outputs": outputs}


@dataclass(frozen=True)
class Advice:
    """The operating point ``infer`` would choose for a budget, with its predicted latency/energy."""

    point: p.Point
    predicted: p.Estimate
    budget_infeasible: bool
    simulated: bool
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)


@dataclass(frozen=True)
class Released:
    """A lease released: what was measured (``latency_ms`` the application's; ``energy_mj`` the daemon's meter
    over the lease where it has one, else the application's, else None), whether the budget was met, and
    ``total_ms``, the daemon's time from the acquire's arrival to the release's, that ``budget_met`` compares
    with the deadline."""

    lease_id: str
    measured: p.Estimate
    budget_met: bool
    total_ms: float
    simulated: bool
    request_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return _fields(self)


@dataclass
class Lease:
    """The board is the application's: run ``k`` groups on its own engine now (the daemon set the clocks of
    ``point``), then release it with what it measured, within ``expires_in_ms``. In ``with client.lease(...)
    as lease:``, :meth:`report` gives the latency to release with (else the block's wall time is used), and
    ``released`` holds the daemon's answer after the block."""

    lease_id: str
    point: p.Point
    predicted: p.Estimate
    expires_in_ms: float
    budget_infeasible: bool
    simulated: bool
    request_id: str = ""
    released: Released | None = None
    reported_ms: float | None = None
    reported_energy_mj: float | None = None

    @property
    def k(self) -> int:
        """The number of channel groups to run."""
        return self.point.k

    def report(self, latency_ms: float, energy_mj: float | None = None) -> None:
        """What the run took (ms; mJ if the application measured it): sent when the ``with`` block ends."""
        self.reported_ms, self.reported_energy_mj = float(latency_ms), energy_mj

    def to_dict(self) -> dict[str, Any]:
        out = _fields(self, exclude="released")
        out["released"] = None if self.released is None else self.released.to_dict()
        return out


def _fields(result: object, exclude: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in result.__dataclass_fields__:  # type: ignore[attr-defined]
        value = getattr(result, name)
        if name != exclude:
            out[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return out


def named_inputs(inputs: object) -> dict[str, object]:
    """A mapping stays as is; a list or tuple gives input0, input1, ...; anything else is one "input"."""
    if isinstance(inputs, Mapping):
        return dict(inputs)
    if isinstance(inputs, (list, tuple)):
        return {f"input{i}": value for i, value in enumerate(inputs)}
    return {"input": inputs}


def budgeted(cls: type[Q], **fields: Any) -> Q:
    """An infer/advise request from the keyword arguments of the client methods.

    Requests are frozen, so one validated for the same arguments before is reused: an application asks
    with the same few budgets over and over, and validating costs as much as the daemon's decision."""
    try:
        key = (cls, *((name, type(value), value) for name, value in fields.items()))
        return _validated(key)  # type: ignore[return-value]
    except TypeError:  # an unhashable argument: validated afresh, which says what is wrong with it
        return _build(cls, fields)


@functools.lru_cache(maxsize=256)
def _validated(key: tuple[Any, ...]) -> p.Request:
    cls: type[p.Request] = key[0]
    return _build(cls, {name: value for name, _, value in key[1:]})


def _build(cls: type[Q], fields: dict[str, Any]) -> Q:
    fields = dict(fields)
    budget = {k: fields.pop(k) for k in ("deadline_ms", "energy_mj", "min_accuracy", "objective")}
    try:
        return p.build(cls, budget=p.build(p.Budget, **budget), **fields)
    except p.ProtocolError as exc:
        raise GovernorError.from_protocol(exc) from None


@dataclass
class Calls:
    """Request ids, encoding and reply matching for one client connection."""

    max_bytes: int = p.MAX_MESSAGE_BYTES
    prefix: str = field(default_factory=lambda: secrets.token_hex(4))
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Encoded headers split around the id: an application repeats the same request but for the id.
    _templates: p.HeaderTemplates = field(default_factory=p.HeaderTemplates)
    # A daemon answers the same budget with the same header but for the id: decoded once, not every call.
    _memo: p.HeaderMemo = field(default_factory=p.HeaderMemo)

    def encode(self, msg: p.Request, tensors: Mapping[str, object] | None = None) -> tuple[str, list[p.Frame]]:
        request_id = f"{self.prefix}-{next(self._counter)}"
        try:
            return request_id, self._templates.encode(msg, request_id, tensors)
        except p.ProtocolError as exc:
            raise GovernorError.from_protocol(exc) from None

    def match(self, frames: Sequence[p.Frame], request_id: str) -> tuple[p.Reply, dict[str, np.ndarray]] | None:
        """The reply to ``request_id``; None for a stale reply; raises for an error reply."""
        try:
            reply, arrays = p.decode_reply(frames, max_bytes=self.max_bytes, memo=self._memo)
        except p.ProtocolError as exc:
            raise GovernorError(exc.code, f"the daemon's reply was refused: {exc.message}") from None
        if reply.id not in (request_id, ""):
            return None
        if isinstance(reply, p.ErrorReply):
            raise GovernorError(reply.code, reply.message, request_id=request_id)
        return reply, arrays


@dataclass(frozen=True)
class Call(Generic[T]):
    """One method call of a client: the request, its tensors, and how the reply becomes the result."""

    request: p.Request
    tensors: Mapping[str, object] | None
    result: Callable[[p.Reply, dict[str, np.ndarray]], T]


def infer_call(inputs: object, **budget: Any) -> Call[InferResult]:
    return Call(budgeted(p.InferRequest, **budget), named_inputs(inputs), _infer_result)


def advise_call(**budget: Any) -> Call[Advice]:
    return Call(budgeted(p.AdviseRequest, **budget), None, _advice)


def acquire_call(*, expected_ms: Sequence[float] | None = None, **budget: Any) -> Call[Lease]:
    expected = None if expected_ms is None else tuple(float(v) for v in expected_ms)
    return Call(budgeted(p.AcquireRequest, expected_ms=expected, **budget), None, _lease)


def stream_open_call(*, period_ms: float, expected_ms: Sequence[float] | None = None, ttl_ms: float | None = None,
                     **budget: Any) -> Call[p.StreamReply]:
    expected = None if expected_ms is None else tuple(float(v) for v in expected_ms)
    return Call(budgeted(p.StreamOpenRequest, period_ms=period_ms, expected_ms=expected, ttl_ms=ttl_ms, **budget),
                None, lambda reply, _: expect(reply, p.StreamReply))


def release_call(lease: Lease | str, latency_ms: float, energy_mj: float | None = None,
                 ok: bool = True) -> Call[Released]:
    lease_id = lease.lease_id if isinstance(lease, Lease) else lease
    try:
        request = p.build(p.ReleaseRequest, lease_id=lease_id, latency_ms=latency_ms, energy_mj=energy_mj,
                          outcome="ok" if ok else "failed")
    except p.ProtocolError as exc:
        raise GovernorError.from_protocol(exc) from None

    def result(reply: p.Reply, _: dict[str, np.ndarray]) -> Released:
        r = expect(reply, p.ReleasedReply)
        released = Released(r.lease_id, r.measured, r.budget_met, r.total_ms, r.simulated, r.id)
        if isinstance(lease, Lease):
            lease.released = released
        return released

    return Call(request, None, result)


@dataclass
class ProfileTask:
    """One run a profiling session (`governor profile --external`) asks for: run ``k`` groups once on your
    engine (``point``'s setpoints are in force) and :meth:`report` the time it took (ms)."""

    point: p.Point
    runs: int
    points: int
    max_points: int
    latency_ms: float | None = None
    failed: bool = False

    @property
    def k(self) -> int:
        return self.point.k

    def report(self, latency_ms: float) -> None:
        self.latency_ms = float(latency_ms)

    def fail(self) -> None:
        """The run did not complete: the session stops, the board is put back, nothing is written."""
        self.failed = True


def profile_next_call(previous: ProfileTask | None) -> Call[ProfileTask | None]:
    """Report ``previous`` (None the first time) and get the next task, or None when the profile is done."""
    if previous is not None and previous.latency_ms is None and not previous.failed:
        raise GovernorError("bad_request", f"report the run of k = {previous.k} first: task.report(latency_ms)")
    try:
        request = p.build(p.ProfileNextRequest, latency_ms=None if previous is None else previous.latency_ms,
                          failed=bool(previous and previous.failed))
    except p.ProtocolError as exc:
        raise GovernorError.from_protocol(exc) from None

    def result(reply: p.Reply, _: dict[str, np.ndarray]) -> ProfileTask | None:
        r = expect(reply, p.ProfileTaskReply)
        if r.done or r.point is None:
            return None
        return ProfileTask(r.point, r.runs, r.points, r.max_points)

    return Call(request, None, result)


def plain_call(request: p.Request, reply_type: type[R]) -> Call[R]:
    return Call(request, None, lambda reply, _: expect(reply, reply_type))


def expect(reply: p.Reply, cls: type[R]) -> R:
    """``reply`` as the reply type the request asked for."""
    if not isinstance(reply, cls):
        raise GovernorError("internal", f"expected a {cls.__name__} but the daemon sent {reply.type!r}")
    return reply


def _infer_result(reply: p.Reply, arrays: dict[str, np.ndarray]) -> InferResult:
    r = expect(reply, p.InferReply)
    return InferResult(arrays, r.point, r.predicted, r.measured, r.budget_met, r.budget_infeasible, r.simulated, r.id,
                       r.total_ms)


def _lease(reply: p.Reply, _: dict[str, np.ndarray]) -> Lease:
    r = expect(reply, p.LeaseReply)
    return Lease(r.lease_id, r.point, r.predicted, r.expires_in_ms, r.budget_infeasible, r.simulated, r.id)


def _advice(reply: p.Reply, _: dict[str, np.ndarray]) -> Advice:
    r = expect(reply, p.AdviseReply)
    return Advice(r.point, r.predicted, r.budget_infeasible, r.simulated, r.id)
