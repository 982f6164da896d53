"""Typed protocol errors: one exception type for every way a message can be wrong.

Decoding never raises anything but :class:`ProtocolError`; its ``code`` is one of :data:`ERROR_CODES`
and its message says what the sender should change. A server turns it into an error reply with
:meth:`ProtocolError.to_reply`, so a malformed request always gets an answer, never a silent drop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:  # a runtime import would be circular: the reply model needs ErrorCode
    from governor.core.protocol._messages import ErrorReply

__all__ = ["ERROR_CODES", "ErrorCode", "ProtocolError"]

ErrorCode = Literal[
    "bad_request",  # malformed or out-of-range message: fix the request
    "unsupported_version",  # major protocol versions differ: upgrade the older side
    "too_large",  # message bigger than the receiver's limit: send smaller tensors
    "infeasible",  # strict request whose budget cannot be met: relax the budget or drop strict
    "unavailable",  # daemon not ready (starting, reloading, no model): retry later
    "expired",  # protocol 1.1: a lease released after it expired (the clocks went back): acquire again
    "internal",  # daemon bug: report it with the daemon's log
]

ERROR_CODES: tuple[str, ...] = get_args(ErrorCode)


class ProtocolError(Exception):
    """A message could not be encoded or decoded, or the peer answered with an error reply.

    ``request_id`` is the id of the offending request when it could be read (else ``""``), so the
    error reply reaches the right outstanding call of a multiplexing client.
    """

    def __init__(self, code: ErrorCode, message: str, *, request_id: str = "") -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"ProtocolError({self.code!r}, {self.message!r})"

    def to_reply(self) -> ErrorReply:
        """The error reply a server sends back for this error."""
        from governor.core.protocol._messages import ErrorReply

        return ErrorReply(id=self.request_id, code=self.code, message=self.message)
