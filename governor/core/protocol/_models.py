"""Value models shared by requests, replies and telemetry: budgets, operating points, estimates.

Every model is frozen, forbids unknown fields and rejects NaN/inf, so a value that validates is safe to
act on. Bounds are deliberately generous (an hour of deadline, 10 kJ of energy): they exist to reject
garbage and overflow, not to second-guess the scheduler, which answers ``budget_infeasible`` instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from governor.core.types import OperatingPoint, Setpoints

__all__ = [
    "MAX_DEADLINE_MS",
    "MAX_ENERGY_MJ",
    "Budget",
    "DomainInfo",
    "Estimate",
    "InputInfo",
    "ModelInterface",
    "Objective",
    "OutputInfo",
    "Placement",
    "Point",
    "ProfileInfo",
    "Wire",
]

MAX_DEADLINE_MS = 3_600_000.0  # one hour: anything longer is a unit mistake (s vs ms)
MAX_ENERGY_MJ = 10_000_000.0  # 10 kJ: minutes of a 15 W board at full power

Objective = Literal["min_energy", "max_accuracy", "min_latency"]
Text = Annotated[str, Field(max_length=4096)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]{0,63}$")]
Hz = Annotated[int, Field(ge=0, le=100_000_000_000)]
Milliseconds = Annotated[float, Field(ge=0, le=MAX_DEADLINE_MS)]
Millijoules = Annotated[float, Field(ge=0, le=MAX_ENERGY_MJ)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Celsius = Annotated[float, Field(ge=-300, le=1000)]
Milliwatts = Annotated[float, Field(ge=0, le=1e7)]


class Wire(BaseModel):
    """Base of everything that crosses the wire: frozen, no unknown fields, no NaN (decoding is strict)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Budget(Wire):
    """What one inference may cost and must achieve. ``None`` means unconstrained.

    ``deadline_ms`` is end-to-end latency in ms, ``energy_mj`` energy per inference in mJ,
    ``min_accuracy`` the lowest acceptable top-1 accuracy as a fraction 0..1 of the profile's metric,
    ``objective`` what to optimise among the points that meet it (None: the daemon's configured default).
    """

    deadline_ms: float | None = Field(default=None, gt=0, le=MAX_DEADLINE_MS)
    energy_mj: float | None = Field(default=None, gt=0, le=MAX_ENERGY_MJ)
    min_accuracy: float | None = Field(default=None, gt=0, le=1)
    # None (left out on the wire): the daemon's ``[policy] objective``, min_energy unless configured.
    objective: Objective | None = None


class Placement(Wire):
    """Where the network runs: a compute unit of the board catalogue and its thread count."""

    unit: Name
    threads: int = Field(default=1, ge=1, le=1024)


class Point(Wire):
    """An operating point: mapping, DVFS setpoints (Hz per domain) and active channel groups ``k``."""

    mapping: Placement
    setpoints_hz: dict[Name, Hz] = Field(default_factory=dict, max_length=64)
    k: int = Field(ge=1, le=4096)

    @classmethod
    def from_operating_point(cls, op: OperatingPoint) -> Point:
        return cls(mapping=Placement(unit=op.unit, threads=op.threads), setpoints_hz=dict(op.setpoints.hz), k=op.groups)

    def to_operating_point(self) -> OperatingPoint:
        return OperatingPoint(
            unit=self.mapping.unit,
            threads=self.mapping.threads,
            setpoints=Setpoints(hz=self.setpoints_hz),
            groups=self.k,
        )


class Estimate(Wire):
    """Latency (ms), energy (mJ, ``None`` without a power sensor) and accuracy (fraction, if known)."""

    latency_ms: Milliseconds
    energy_mj: Millijoules | None = None
    accuracy: Fraction | None = None


class DomainInfo(Wire):
    """A DVFS domain as the kernel reports it, in Hz."""

    cur_hz: Hz
    min_hz: Hz
    max_hz: Hz


class InputInfo(Wire):
    """One input tensor a model takes (protocol 1.1). Values go in raw: the network normalises inside."""

    shape: tuple[Annotated[int, Field(ge=1, le=2**20)], ...] = Field(max_length=8, description="one sample")
    dtype: Literal["<f4"] = "<f4"  # other numeric dtypes are cast to float32 by the daemon
    max_batch: int = Field(ge=1, description="most samples one infer may carry (a leading batch axis)")
    mean: tuple[float, ...] = Field(max_length=64, description="per channel, subtracted inside the network")
    std: tuple[float, ...] = Field(max_length=64, description="per channel, divided by inside the network")
    value_range: tuple[float, float] | None = Field(default=None, description="raw values of the training data")
    scale: Text = Field(description="in words: what values to send")


class OutputInfo(Wire):
    """One output tensor of ``infer`` (protocol 1.1): ``(N, len(classes))`` float32 logits."""

    name: Name = "output"
    kind: Literal["logits"] = "logits"  # unnormalised class scores: argmax is the class, softmax a probability
    classes: tuple[Annotated[str, Field(max_length=128)], ...] = Field(max_length=100_000)


class ModelInterface(Wire):
    """What a model takes and gives (protocol 1.1): exactly one input and one output today."""

    inputs: tuple[InputInfo, ...] = Field(min_length=1, max_length=64)
    outputs: tuple[OutputInfo, ...] = Field(min_length=1, max_length=64)


class ProfileInfo(Wire):
    """One loaded model profile: the latency/power grid of ``model`` on ``board``."""

    model: Name
    board: Name
    groups: int = Field(ge=1, le=4096, description="channel groups G; k ranges over 1..G")
    points: int = Field(ge=0, description="operating points in the measured grid")
    accuracy: tuple[Fraction, ...] = Field(default=(), description="accuracy at k = 1..G (fractions)")
    simulated: bool
    interface: ModelInterface | None = Field(default=None, description="protocol 1.1: what the model takes")

    @model_validator(mode="after")
    def _accuracy_per_group(self) -> ProfileInfo:
        if self.accuracy and len(self.accuracy) != self.groups:
            raise ValueError(f"accuracy lists {len(self.accuracy)} values but groups is {self.groups}")
        return self
