"""Client library for the dnn-governor daemon. Depends on governor.core.protocol, numpy and pyzmq only.

    from governor_client import Client
    with Client() as gov:                       # endpoint: $GOVERNOR_ENDPOINT or the daemon's default
        result = gov.infer(image, deadline_ms=20)
        print(result.output.argmax(), result.point, result.measured, result.simulated)

:class:`AsyncClient` is the asyncio twin. Errors are :class:`GovernorError` (``.code`` says which);
:class:`DaemonUnreachable` when nothing answers, with what to do. The wire format is in
docs/protocol.md.
"""

from governor_client._calls import Advice, InferResult, Lease, ProfileTask, Released
from governor_client._errors import DaemonUnreachable, GovernorError
from governor_client._stream import Stream, StreamSummary
from governor_client._transport import CurveKeys, Transport, default_endpoint
from governor_client.aio import AsyncClient, AsyncSubscription
from governor_client.client import Client, Subscription

__all__ = [
    "Advice",
    "AsyncClient",
    "AsyncSubscription",
    "Client",
    "CurveKeys",
    "DaemonUnreachable",
    "GovernorError",
    "InferResult",
    "Lease",
    "ProfileTask",
    "Released",
    "Stream",
    "StreamSummary",
    "Subscription",
    "Transport",
    "default_endpoint",
]
