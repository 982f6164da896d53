"""Messages <-> multipart frames: ``[header JSON, buffer, buffer, ...]``.

Decoding checks, in this order and cheapest first: total size (``too_large``), header size, UTF-8 and
JSON syntax (no NaN, no duplicate keys), the version (``unsupported_version``: a newer major may
change everything else, so nothing else is judged), the message type, the schema (strict types,
bounds, no unknown fields), then each tensor frame against its spec. Any failure is a
:class:`ProtocolError` carrying the request id when one could be read.

Encoding omits fields that hold their default, so a message that uses no feature of a newer minor
version is readable by every peer of the same major version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
from pydantic import ValidationError

from governor.core.protocol._errors import ProtocolError
from governor.core.protocol._messages import (
    PROTOCOL_VERSION,
    REPLY_TYPES,
    REQUEST_TYPES,
    ErrorReply,
    Message,
    Reply,
    Request,
    TensorSpec,
)
from governor.core.protocol._models import Wire
from governor.core.protocol._tensors import MAX_TENSORS, arrays_from_buffers, buffers_from_arrays

if TYPE_CHECKING:
    from governor.core.protocol._memo import HeaderMemo

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_MESSAGE_BYTES",
    "Frame",
    "build",
    "decode_reply",
    "decode_request",
    "encode_reply",
    "encode_request",
]

Frame = bytes | bytearray | memoryview
Role = Literal["client", "daemon", "publisher"]
M = TypeVar("M", bound=Message)
W = TypeVar("W", bound=Wire)

MAX_MESSAGE_BYTES = 64 * 2**20  # default limit on header + all tensor frames
MAX_HEADER_BYTES = 64 * 2**10
_VERSION = re.compile(r"^([0-9]{1,4})\.([0-9]{1,4})$")  # ASCII digits only: \d would take "１.0"
_WHAT: dict[Role, str] = {"client": "request", "daemon": "reply", "publisher": "telemetry message"}
_ID = re.compile(r"^[A-Za-z0-9._:-]{0,64}$")


def encode_request(msg: Request, tensors: Mapping[str, Any] | None = None) -> list[Frame]:
    """Frames for a request; ``tensors`` (name -> array) only for ``infer``, sent without copying."""
    return encode_message(msg, tensors)


def encode_reply(msg: Reply, tensors: Mapping[str, Any] | None = None) -> list[Frame]:
    """Frames for a reply; ``tensors`` (name -> array) only for ``infer`` outputs."""
    return encode_message(msg, tensors)


def decode_request(
    frames: Sequence[Frame], *, max_bytes: int = MAX_MESSAGE_BYTES, memo: HeaderMemo | None = None
) -> tuple[Request, dict[str, np.ndarray]]:
    """A request and its input arrays (views of the frames). Raises only :class:`ProtocolError`.

    ``memo``: headers seen before, to skip parsing one that differs from a checked one only in its id."""
    return decode_message(frames, REQUEST_TYPES, "client", max_bytes, memo)


def decode_reply(
    frames: Sequence[Frame], *, max_bytes: int = MAX_MESSAGE_BYTES, memo: HeaderMemo | None = None
) -> tuple[Reply, dict[str, np.ndarray]]:
    """A reply and its output arrays (views of the frames). Raises only :class:`ProtocolError`."""
    return decode_message(frames, REPLY_TYPES, "daemon", max_bytes, memo)


def encode_message(msg: Message, tensors: Mapping[str, Any] | None) -> list[Frame]:
    if tensors and not msg.carries_tensors:
        raise ProtocolError("bad_request", f"{msg.type!r} messages carry no tensors")
    specs, buffers = buffers_from_arrays(tensors or {})
    _check_tensor_count(msg, len(specs))
    return [encode_header(msg, specs), *buffers]


def encode_header(msg: Message, specs: Sequence[TensorSpec] = ()) -> bytes:
    """The JSON header: ``v``, ``type``, ``id`` first, then the fields that differ from their default."""
    # pydantic's own JSON writer (Rust) instead of model_dump + json.dumps: this runs twice per round trip.
    # Models forbid NaN and infinities, so nothing non-standard can reach it.
    body = msg.model_dump_json(exclude_defaults=True, exclude={"v", "type", "id", "tensors"})
    head = f'{{"v":"{PROTOCOL_VERSION}","type":{json.dumps(msg.type)},"id":{json.dumps(msg.id)}'
    if msg.carries_tensors:
        head += ',"tensors":' + json.dumps([spec.model_dump(mode="json") for spec in specs], separators=(",", ":"))
    return (head + ("}" if body == "{}" else "," + body[1:])).encode()


def decode_message(
    frames: Sequence[Frame], table: Mapping[str, type[M]], role: Role, max_bytes: int,
    memo: HeaderMemo | None = None,
) -> tuple[M, dict[str, np.ndarray]]:
    views = _views(frames, max_bytes)
    raw, buffers = views[0], views[1:]
    cut = memo.cut(raw) if memo is not None else None
    known = memo.recall(cut) if memo is not None else None
    if known is not None and not buffers and not known.carries_tensors and known.type in table:
        # A header that passed, with nothing after it: nothing more to check (an advise, a reply to one).
        return known, {}  # type: ignore[return-value]
    head: Mapping[str, Any] = {}
    try:
        if known is not None and known.type in table:  # byte for byte a header that passed, but for the id
            msg: M = known  # type: ignore[assignment]
        else:
            head = parse_header(raw)
            msg = validate_header(raw, head, table, role)
        if buffers and not msg.carries_tensors:
            raise ProtocolError(
                "bad_request", f"{msg.type!r} messages carry no tensors, but {len(buffers)} frames follow the header"
            )
        specs: tuple[TensorSpec, ...] = getattr(msg, "tensors", ())
        _check_tensor_count(msg, len(specs))
        arrays = arrays_from_buffers(specs, buffers)
    except ProtocolError as exc:
        exc.request_id = _peek_id(head) if known is None else known.id
        raise
    if memo is not None and known is None and not isinstance(msg, ErrorReply):  # an error says something new
        memo.remember(cut, msg)
    return msg, arrays


def _views(frames: Sequence[Frame], max_bytes: int) -> list[memoryview]:
    if not frames:
        raise ProtocolError("bad_request", "empty message: a message starts with a JSON header frame")
    if len(frames) > 1 + MAX_TENSORS:
        raise ProtocolError("too_large", f"{len(frames)} frames exceed the limit of {1 + MAX_TENSORS}")
    try:
        views = [memoryview(frame) for frame in frames]
    except TypeError:
        raise ProtocolError("bad_request", "every frame must be a bytes-like buffer") from None
    total = sum(view.nbytes for view in views)
    if total > max_bytes:
        raise ProtocolError(
            "too_large",
            f"message of {total} bytes exceeds the receiver's limit of {max_bytes} bytes: "
            "send smaller or fewer tensors per request",
        )
    return views


def parse_header(raw: memoryview) -> dict[str, Any]:
    """The header frame as a JSON object; only ``ProtocolError`` escapes."""
    if raw.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"header of {raw.nbytes} bytes exceeds {MAX_HEADER_BYTES} bytes")
    try:
        head = json.loads(bytes(raw).decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError("bad_request", f"header frame is not valid UTF-8 JSON: {_clip(exc)}") from None
    if not isinstance(head, dict):
        raise ProtocolError("bad_request", f"header must be a JSON object, got {type(head).__name__}")
    return head


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate keys in a JSON object")
    return obj


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not a number the protocol accepts")


def validate_header(raw: memoryview, head: dict[str, Any], table: Mapping[str, type[M]], role: Role) -> M:
    """Version, type and schema checks of a parsed header; returns the message."""
    _check_version(head.get("v"), role)
    kind = head.get("type")
    cls = table.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(
            "bad_request", f"unknown {_WHAT[role]} type {_clip(kind)}: expected one of {', '.join(sorted(table))}"
        )
    try:
        return cls.model_validate_json(bytes(raw), strict=True)
    except ValidationError as exc:
        raise ProtocolError("bad_request", f"invalid {kind} {_WHAT[role]}: {_describe(exc)}") from None


def build(cls: type[W], **fields: Any) -> W:
    """``cls(**fields)``, with a validation failure turned into a ``bad_request`` that names the fields."""
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise ProtocolError("bad_request", f"invalid {cls.__name__}: {_describe(exc)}") from None


def _check_version(version: object, role: Role) -> None:
    match = _VERSION.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise ProtocolError(
            "bad_request",
            f"header field 'v' must be the protocol version as 'MAJOR.MINOR' (this side speaks "
            f"{PROTOCOL_VERSION}), got {_clip(version)}",
        )
    theirs, ours = int(match.group(1)), int(PROTOCOL_VERSION.split(".")[0])
    if theirs == ours:
        return
    older = "daemon" if (role == "client") == (theirs > ours) else "client"
    raise ProtocolError(
        "unsupported_version",
        f"the {role} speaks governor protocol {version} but this side speaks {PROTOCOL_VERSION}: "
        f"upgrade the {older} (pip install -U dnn-governor) so both share one major version",
    )


def _check_tensor_count(msg: Message, count: int) -> None:
    if msg.requires_tensors and count == 0:
        raise ProtocolError("bad_request", f"{msg.type!r} needs at least one input tensor")


def _describe(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "header"
        if err["type"] == "extra_forbidden":
            parts.append(
                f"unknown field {where!r} (a newer minor version may add fields; this side speaks {PROTOCOL_VERSION})"
            )
        elif err["type"] == "missing":
            parts.append(f"missing field {where!r}")
        else:
            parts.append(f"{where}: {err['msg']} (got {_clip(err.get('input'))})")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "") + "; see docs/protocol.md"


def _peek_id(head: Mapping[str, Any]) -> str:
    candidate = head.get("id")
    return candidate if isinstance(candidate, str) and _ID.fullmatch(candidate) else ""


def _clip(value: object, width: int = 60) -> str:
    text = repr(value) if not isinstance(value, Exception) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."
