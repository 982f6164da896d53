"""Headers that passed every check once, kept so the same header with another id skips the parse;
and, on the sending side, encoded headers kept so the same message with another id skips the encode.

A peer asks with the same few budgets over and over (and a daemon answers an ``advise`` for the same
budget with the same point), so consecutive headers differ in their ``id`` only. Parsing and validating
a header costs as much as the daemon's decision, on both sides of every call. The key is the header's
exact bytes with the id cut out, so a hit is a header byte for byte identical to one that passed; the
new id is checked against the protocol's id pattern before it is put in. Headers are cut only where the
encoder writes the id (right after ``v`` and ``type``); any other layout is decoded in full.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from governor.core.protocol._codec import Frame, encode_message
from governor.core.protocol._errors import ProtocolError
from governor.core.protocol._messages import Message, TensorSpec
from governor.core.protocol._tensors import buffers_from_arrays

__all__ = ["HeaderMemo", "HeaderTemplates"]

_HEAD = re.compile(rb'\{"v":"[0-9]{1,4}\.[0-9]{1,4}","type":"[a-z_]{1,32}","id":"')
_ID = re.compile(r"^[A-Za-z0-9._:-]{0,64}$")  # the protocol's RequestId pattern

Cut = tuple[bytes, str]  # a header without its id, and the id


class HeaderMemo:
    """Bounded: at most ``size`` headers of at most ``max_header_bytes``, the oldest forgotten first."""

    def __init__(self, size: int = 256, max_header_bytes: int = 4096) -> None:
        self.size = size
        self.max_header_bytes = max_header_bytes
        self._known: dict[bytes, Message] = {}

    def recall(self, cut: Cut | None) -> Message | None:
        """The message a header identical but for its id decoded to, with this header's id; or None."""
        if cut is None:
            return None
        known = self._known.get(cut[0])
        return None if known is None else _with_id(known, cut[1])

    def remember(self, cut: Cut | None, msg: Message) -> None:
        if cut is None or cut[1] != msg.id:  # the cut must be exactly the id the message carries
            return
        self._known[cut[0]] = msg
        if len(self._known) > self.size:
            del self._known[next(iter(self._known))]

    def __len__(self) -> int:
        return len(self._known)

    def cut(self, raw: Any) -> Cut | None:
        """The header without its id, and the id; None for a header this memo does not keep (too long,
        another layout, an id outside the pattern). Taken once per message, for recall and remember."""
        if raw.nbytes > self.max_header_bytes:
            return None
        header = bytes(raw)
        start = _HEAD.match(header)
        if start is None:
            return None
        end = header.find(b'"', start.end())
        if end < 0:
            return None
        ident = header[start.end():end].decode("ascii", "replace")
        if not _ID.fullmatch(ident):
            return None
        return header[: start.end()] + header[end:], ident


def _with_id(msg: Message, ident: str) -> Message:
    """``msg.model_copy(update={"id": ident})`` without pydantic's generic copy, which was a third of a hit's
    cost. The models are frozen, so the copy shares every field value but the id."""
    clone = msg.__class__.__new__(msg.__class__)
    values = dict(msg.__dict__)
    values["id"] = ident
    object.__setattr__(clone, "__dict__", values)
    object.__setattr__(clone, "__pydantic_fields_set__", msg.__pydantic_fields_set__ | {"id"})
    object.__setattr__(clone, "__pydantic_extra__", msg.__pydantic_extra__)
    object.__setattr__(clone, "__pydantic_private__", msg.__pydantic_private__)
    return clone


class HeaderTemplates:
    """Encoded headers split around the id, per (message without id, tensor specs); bounded like the memo.

    The tensors are still turned into specs and buffers on every call, which checks each array."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._known: dict[tuple[Message, tuple[TensorSpec, ...]], tuple[bytes, bytes]] = {}
        # The last message without tensors and its template, by identity: a client's cached request object
        # comes back call after call, and hashing and comparing the model as a key cost more than the rest.
        self._last: tuple[Message | None, tuple[bytes, bytes]] = (None, (b"", b""))

    def encode(self, msg: Message, request_id: str, tensors: Mapping[str, object] | None = None) -> list[Frame]:
        """The frames of ``msg`` with id ``request_id``, as ``encode_message`` would write them."""
        if not _ID.fullmatch(request_id):
            raise ProtocolError("bad_request", f"request id {request_id[:80]!r} does not match {_ID.pattern}")
        if not tensors and msg is self._last[0]:
            head, tail = self._last[1]
            return [head + request_id.encode() + tail]
        given = msg
        if msg.id:
            msg = msg.model_copy(update={"id": ""})
        specs, buffers = buffers_from_arrays(tensors or {})
        key = (msg, specs)
        template = self._known.get(key)
        if template is None:
            header = bytes(encode_message(msg, tensors)[0])  # every check of a first encode runs here
            # The encoder writes v, type and id first, so the first empty id in the header is the id.
            cut = header.index(b'"id":""') + len(b'"id":"')
            template = self._known[key] = (header[:cut], header[cut:])
            if len(self._known) > self.size:
                del self._known[next(iter(self._known))]
        if not tensors and not given.id:
            self._last = (given, template)
        return [template[0] + request_id.encode() + template[1], *buffers]

    def __len__(self) -> int:
        return len(self._known)
