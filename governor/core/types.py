"""Frozen values that flow through one tick: sensors -> observation -> decision -> actuators -> feedback.

Units are fixed here once: frequencies in Hz, power in mW, energy in mJ, time in seconds (``t``) or
milliseconds where the name says ``_ms``, temperature in °C, utilisation as a fraction 0..1.
Everything is immutable; state changes by building new values (``dataclasses.replace``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType

__all__ = [
    "DomainReading",
    "Observation",
    "OperatingPoint",
    "Reason",
    "Sample",
    "Setpoints",
    "frozen_map",
]


def frozen_map(items: Mapping[str, float] | None = None) -> Mapping[str, float]:
    """A read-only mapping (values stay hashable-friendly and safe to share)."""
    return MappingProxyType(dict(items or {}))


class Reason(str, Enum):
    """Why a setpoint is being applied (after power-profiles-daemon's activation reasons).

    Only the reasons the daemon emits are members: today every setpoint change serves a client's
    request. A new reason is a protocol change (docs/protocol.md, telemetry ``event``)."""

    CLIENT = "client"


@dataclass(frozen=True)
class DomainReading:
    """What a DVFS domain reports: the kernel's current frequency and the limits in force, in Hz."""

    cur_hz: int
    min_hz: int
    max_hz: int
    governor: str = ""


@dataclass(frozen=True)
class Setpoints:
    """Requested frequency per DVFS domain name, in Hz."""

    hz: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "hz", MappingProxyType(dict(self.hz)))

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.hz.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Setpoints) and dict(self.hz) == dict(other.hz)


@dataclass(frozen=True)
class OperatingPoint:
    """Everything the governor chooses for one inference."""

    unit: str  # compute unit name from the board catalogue (e.g. "a57", "gpu", "host")
    threads: int
    setpoints: Setpoints
    groups: int  # active channel groups k, 1..G


@dataclass(frozen=True)
class Observation:
    """One sensor sweep. ``t`` comes from the injected clock (the core never reads a clock)."""

    t: float
    domains: Mapping[str, DomainReading] = field(default_factory=lambda: MappingProxyType({}))
    power_mw: Mapping[str, float] = field(default_factory=frozen_map)
    total_power_mw: float | None = None
    temps_c: Mapping[str, float] = field(default_factory=frozen_map)
    util: Mapping[str, float] = field(default_factory=frozen_map)  # compute unit -> busy fraction
    simulated: bool = False
    unavailable: tuple[str, ...] = ()  # sensors/actuators that failed this sweep, with the reason


@dataclass(frozen=True)
class Sample:
    """What really happened when a batch ran: the feedback the models learn from."""

    point: OperatingPoint
    latency_ms: float
    energy_mj: float | None
    simulated: bool = False
