"""Driver interfaces: actuators (frequency domains, hotplug) and sensors (power, thermal, load).

Every actuator follows one transaction (after tuned's set/get pairs and jetson_clocks
--store/--restore): :meth:`snapshot` saves the baseline of every node it may touch, a write is
always followed by a read-back (the kernel clamps and snaps; the read-back value is the truth),
and :meth:`restore` puts the baseline back in an order the kernel accepts.

Probing has three outcomes (after power-profiles-daemon): SUCCESS, FAIL (not on this board), and
DEFER (exists but not ready, e.g. a rail-gated GPU whose devfreq node appears after power-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from governor.core.types import DomainReading

__all__ = [
    "Baseline",
    "FreqDomain",
    "LoadSensor",
    "PowerSensor",
    "Probe",
    "ProbeResult",
    "ThermalSensor",
]


class ProbeResult(str, Enum):
    SUCCESS = "success"
    FAIL = "fail"
    DEFER = "defer"


@dataclass(frozen=True)
class Probe:
    result: ProbeResult
    detail: str = ""


@dataclass(frozen=True)
class Baseline:
    """The saved state of one actuator: file path (relative to the root) -> exact text, in save order.

    It is JSON-serialisable (``owner`` + ``files``) so the daemon can keep it in its state file and
    restore it after a crash.
    """

    owner: str
    files: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        return {"owner": self.owner, "files": [list(pair) for pair in self.files]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Baseline:
        files = data.get("files", [])
        assert isinstance(files, list)
        return cls(owner=str(data["owner"]), files=tuple((str(p), str(t)) for p, t in files))


@runtime_checkable
class FreqDomain(Protocol):
    """A DVFS domain (CPU cluster, GPU, memory controller). Frequencies in Hz."""

    name: str
    kind: str

    def probe(self) -> Probe: ...
    def available_hz(self) -> tuple[int, ...]: ...
    def read(self) -> DomainReading: ...
    def pin(self, hz: int) -> DomainReading:
        """Hold the domain at ``hz`` (snapped by the kernel); returns the read-back."""
        ...
    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        """Let the domain's own governor move within [min_hz, max_hz]; returns the read-back."""
        ...
    def snapshot(self) -> Baseline: ...
    def restore(self, baseline: Baseline) -> None: ...


@runtime_checkable
class PowerSensor(Protocol):
    """Power rails of one monitor chip, in mW (instantaneous, as the sensor last updated)."""

    name: str
    update_interval_s: float

    def probe(self) -> Probe: ...
    def read_mw(self) -> dict[str, float]: ...


@runtime_checkable
class ThermalSensor(Protocol):
    """Temperatures by zone type in °C; disabled zones (Jetson -256 °C) are left out."""

    def read_c(self) -> dict[str, float]: ...


@runtime_checkable
class LoadSensor(Protocol):
    """Busy fraction 0..1 per compute unit since the previous call."""

    def read_util(self) -> dict[str, float]: ...
