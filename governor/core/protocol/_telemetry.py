"""Telemetry: what the daemon publishes on its PUB socket, as ``[topic, header JSON]`` frames.

The topic frame equals the header's ``type`` (``observation``, ``inference``, ``event``), so a SUB
socket filters by prefix without parsing JSON. ``seq`` counts up by one per published message, so a
subscriber sees how many it missed; ``t`` is seconds on the daemon's monotonic clock (only
differences mean anything). Every message says whether it is ``simulated``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from governor.core.protocol._codec import MAX_MESSAGE_BYTES, Frame, decode_message, encode_header
from governor.core.protocol._errors import ProtocolError
from governor.core.protocol._messages import Message
from governor.core.protocol._models import (
    Budget,
    Celsius,
    DomainInfo,
    Estimate,
    Fraction,
    Milliwatts,
    Name,
    Point,
    Text,
)
from governor.core.types import Observation, Reason

__all__ = [
    "TELEMETRY_TOPICS",
    "Telemetry",
    "TelemetryEvent",
    "TelemetryInference",
    "TelemetryObservation",
    "decode_telemetry",
    "encode_telemetry",
]


class Telemetry(Message):
    """Base of telemetry messages: sequence number, daemon time (s) and the simulated label."""

    seq: int = Field(ge=0)
    t: float
    simulated: bool


class TelemetryObservation(Telemetry):
    """One sensor sweep: DVFS domains (Hz), rail power (mW), temperatures (°C), utilisation (0..1)."""

    type: Literal["observation"] = "observation"
    domains: dict[Name, DomainInfo] = Field(default_factory=dict, max_length=64)
    power_mw: dict[Name, Milliwatts] = Field(default_factory=dict, max_length=64)
    total_power_mw: Milliwatts | None = None
    temps_c: dict[Name, Celsius] = Field(default_factory=dict, max_length=256)
    util: dict[Name, Fraction] = Field(default_factory=dict, max_length=64)
    unavailable: tuple[Text, ...] = ()

    @classmethod
    def from_observation(cls, obs: Observation, seq: int) -> TelemetryObservation:
        domains = {n: DomainInfo(cur_hz=d.cur_hz, min_hz=d.min_hz, max_hz=d.max_hz) for n, d in obs.domains.items()}
        return cls(
            seq=seq,
            t=obs.t,
            simulated=obs.simulated,
            domains=domains,
            power_mw=dict(obs.power_mw),
            total_power_mw=obs.total_power_mw,
            temps_c=dict(obs.temps_c),
            util=dict(obs.util),
            unavailable=obs.unavailable,
        )


class TelemetryInference(Telemetry):
    """One finished inference (``id`` is its request id): chosen point, predicted vs measured."""

    type: Literal["inference"] = "inference"
    budget: Budget = Budget()
    point: Point
    predicted: Estimate
    measured: Estimate
    budget_met: bool
    budget_infeasible: bool


class TelemetryEvent(Telemetry):
    """A change of state worth a line in a log: setpoints applied, profiles reloaded, throttling."""

    type: Literal["event"] = "event"
    kind: Name
    reason: Reason | None = None
    message: Text = ""


TELEMETRY_TYPES: dict[str, type[Telemetry]] = {
    cls.model_fields["type"].default: cls for cls in (TelemetryObservation, TelemetryInference, TelemetryEvent)
}
TELEMETRY_TOPICS: tuple[str, ...] = tuple(TELEMETRY_TYPES)


def encode_telemetry(msg: Telemetry) -> list[Frame]:
    """``[topic, header]`` for the PUB socket."""
    return [msg.type.encode(), encode_header(msg)]


def decode_telemetry(frames: Sequence[Frame], *, max_bytes: int = MAX_MESSAGE_BYTES) -> Telemetry:
    """The telemetry message in ``[topic, header]`` frames. Raises only :class:`ProtocolError`."""
    if len(frames) != 2:
        raise ProtocolError("bad_request", f"telemetry is [topic, header], got {len(frames)} frames")
    msg, _ = decode_message(frames[1:], TELEMETRY_TYPES, "publisher", max_bytes)
    try:
        topic = bytes(memoryview(frames[0]))
    except TypeError:
        raise ProtocolError("bad_request", "the topic frame must be a bytes-like buffer") from None
    if topic != msg.type.encode():
        raise ProtocolError("bad_request", f"topic {topic[:40]!r} does not match the header type {msg.type!r}")
    return msg
