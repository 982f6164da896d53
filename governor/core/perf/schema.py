"""The profile file (``profiles/models/<model>/<board>.json``): versioned, validated, self-describing.

Theory of operation
-------------------
A profile records *what was measured* (every point with its values), *what was fitted* (each
(target, mapping) ensemble: candidate specs, parameters, jackknife fold parameters, CV scores) and
*where it came from* (board, kernel, JetPack, power sensor, date, source, and ``simulated``). The
measured points make a profile refittable by a later, better model; the fitted parameters make it
usable at once without refitting, so a daemon loads it in milliseconds.

Loading checks, in order: valid JSON, the ``format`` marker, the ``schema_version`` (a wrong
version gets its own message before any field error), then every field, then cross-references
(points use the space's domains and mappings, model parameters have the length their form needs).
Each failure raises :class:`ProfileError` naming the file and what to do. Pure: text in, text out.

Group counts predicted by the layer-wise model rather than measured (``governor profile --groups``
leaving some k out) go in ``predicted``, one record per (mapping, k), never in ``points``; the field
is written only when there are some, so a profile without predictions is byte-for-byte what it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from governor.core.perf.features import CandidateSpec
from governor.core.perf.fit import n_params
from governor.core.perf.model import TargetModel
from governor.core.perf.profile import GroupPrediction, ProfileModel
from governor.core.perf.sampling import SamplerSettings, SamplerStatus
from governor.core.perf.space import Measurement, Space

__all__ = [
    "PROFILE_FORMAT",
    "PROFILE_SCHEMA_VERSION",
    "ProfileDoc",
    "ProfileError",
    "Provenance",
    "build_profile_doc",
    "dump_profile",
    "parse_profile",
    "profile_model",
]

PROFILE_FORMAT: Final = "dnn-governor-profile"
PROFILE_SCHEMA_VERSION: Final = 1


class ProfileError(ValueError):
    """A profile file is unusable; the message names the file, the problem and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Provenance(_Strict):
    board: str
    kernel: str = "unknown"
    jetpack: str = "unknown"
    sensor: str = Field(default="unknown", description="power sensor and rail the power came from")
    date: str = Field(description="when the profile was measured (ISO 8601, from the caller's clock)")
    simulated: bool
    source: str = Field(description="board, sim:<board> or replay:<table>")
    tool: str = ""


class DomainAxis(_Strict):
    name: str
    opp_hz: tuple[float, ...] = Field(min_length=1, description="every frequency the board offers, Hz")


class SpaceRecord(_Strict):
    domains: tuple[DomainAxis, ...]
    mappings: tuple[str, ...] = Field(min_length=1)
    groups: tuple[int, ...] = Field(min_length=1)
    channels_per_group: float = Field(default=1.0, gt=0)


class PointRecord(_Strict):
    mapping: str
    setpoints_hz: dict[str, float]
    groups: int = Field(ge=1)
    latency_ms: float | None = Field(default=None, gt=0)
    power_mw: float | None = Field(default=None, gt=0)
    energy_mj: float | None = Field(default=None, gt=0)
    rails_mw: dict[str, float] = {}
    simulated: bool = False


class KBasisRecord(_Strict):
    kind: Literal["const", "linear", "step", "hybrid", "onehot", "curve"]
    width: float = 0.0
    channels: float = 1.0
    values: tuple[float, ...] = ()
    name: str = ""


class SpecRecord(_Strict):
    form: Literal["roofline", "saturated", "layered", "poly", "logpoly"]
    kbasis: KBasisRecord
    powers: tuple[float, ...] = ()
    pairs: int = Field(default=0, ge=0, le=2)
    knots: tuple[float, ...] = ()
    couple: float = Field(default=0.0, ge=0)
    memory: int = Field(default=-1, ge=-1)


class MemberRecord(_Strict):
    spec: SpecRecord
    params: tuple[float, ...] = Field(min_length=1)
    folds: tuple[tuple[float, ...], ...]
    cv_mape: float = Field(ge=0)
    weight: float = Field(gt=0, le=1)
    fold_leverage: tuple[Annotated[float, Field(ge=0, lt=1)], ...] = ()  # per fold; () in older files


class AxesRecord(_Strict):
    domains: tuple[str, ...]
    fmax_hz: tuple[float, ...]
    kmax: int = Field(ge=1)
    live: tuple[bool, ...] = ()


class ModelRecord(_Strict):
    target: str
    mapping: str
    axes: AxesRecord
    members: tuple[MemberRecord, ...] = Field(min_length=1)
    cv_mape: float = Field(ge=0)
    noise_rel: float = Field(ge=0)
    n_points: int = Field(ge=1)


class SamplingRecord(_Strict):
    target_mape_pct: float
    max_points: int
    candidates: int
    measured: int
    stopped: str
    estimated_mape_pct: dict[str, float]


class PredictedRecord(_Strict):
    """An unmeasured k of one mapping, predicted between measured levels lo and hi (never a measurement)."""

    mapping: str
    groups: int = Field(ge=1)
    method: Literal["layerwise"] = "layerwise"
    lo: int = Field(ge=1)
    hi: int = Field(ge=1)
    fraction: float = Field(description="phi: 0 at lo, 1 at hi (dimensionless)")
    fraction_std: float = Field(ge=0, description="standard deviation of phi (dimensionless)")
    core: Literal["linear", "step"] = "linear"
    width: float = Field(default=0.0, ge=0, description="step core: channels per tile")


class ProfileDoc(_Strict):
    format: Literal["dnn-governor-profile"] = PROFILE_FORMAT
    schema_version: Literal[1] = PROFILE_SCHEMA_VERSION
    model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    provenance: Provenance
    space: SpaceRecord
    sampling: SamplingRecord
    points: tuple[PointRecord, ...]
    models: tuple[ModelRecord, ...]
    idle_power_mw: float | None = Field(
        default=None, ge=0, description="board power with nothing of ours running and the clocks left to their "
        "kernel governors, mW, measured before profiling; the daemon's first idle floor (None: no sensor)")
    predicted: tuple[PredictedRecord, ...] = ()

    @model_validator(mode="after")
    def _references(self) -> ProfileDoc:
        domains = [d.name for d in self.space.domains]
        for i, p in enumerate(self.points):
            if sorted(p.setpoints_hz) != sorted(domains) or p.mapping not in self.space.mappings:
                raise ValueError(f"point {i} does not match the space (domains {domains}, "
                                 f"mappings {list(self.space.mappings)})")
        for m in self.models:
            if list(m.axes.domains) != domains or len(m.axes.fmax_hz) != len(domains):
                raise ValueError(f"model {m.target}@{m.mapping} uses domains {list(m.axes.domains)}, not {domains}")
            for member in m.members:
                spec = CandidateSpec.from_dict(member.spec.model_dump())
                need = n_params(spec, sum(m.axes.live) if m.axes.live else len(domains), m.axes.kmax)
                if len(member.params) != need or any(len(f) != need for f in member.folds):
                    raise ValueError(f"model {m.target}@{m.mapping}: a {spec.label} member needs {need} "
                                     f"parameters per fit, the file has {len(member.params)}")
                if member.fold_leverage and len(member.fold_leverage) != len(member.folds):
                    raise ValueError(f"model {m.target}@{m.mapping}: a {spec.label} member has "
                                     f"{len(member.folds)} folds but {len(member.fold_leverage)} fold leverages")
        measured = set(self.space.groups)
        for r in self.predicted:
            if r.mapping not in self.space.mappings or r.groups in measured or not {r.lo, r.hi} <= measured \
                    or r.lo == r.hi:
                raise ValueError(f"predicted k={r.groups} of {r.mapping!r} must be an unmeasured group count of a "
                                 f"profiled mapping between two measured ones ({sorted(measured)})")
        if any(p.simulated for p in self.points) and not self.provenance.simulated:
            raise ValueError("points are simulated but provenance.simulated is false")
        return self


def parse_profile(text: str | bytes, source: str) -> ProfileDoc:
    """Validate a profile file's text; ``source`` (its path) is named in every error."""
    try:
        raw: Any = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{source}: not valid JSON ({exc}); the file is corrupt: re-run `governor profile`") from exc
    if not isinstance(raw, dict) or raw.get("format") != PROFILE_FORMAT:
        raise ProfileError(f"{source}: not a {PROFILE_FORMAT} file (no format={PROFILE_FORMAT!r} marker)")
    version = raw.get("schema_version")
    if version != PROFILE_SCHEMA_VERSION:
        newer = isinstance(version, int) and version > PROFILE_SCHEMA_VERSION
        fix = "upgrade dnn-governor" if newer else "re-run `governor profile` to measure it again"
        raise ProfileError(f"{source}: profile schema version {version!r} is not supported (this governor reads "
                           f"version {PROFILE_SCHEMA_VERSION}); {fix}")
    try:
        return ProfileDoc.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"field '{'.'.join(str(p) for p in e['loc']) or '(top)'}': {e['msg']}"
                             for e in exc.errors())
        raise ProfileError(f"{source}: {problems}") from exc


def dump_profile(doc: ProfileDoc) -> str:
    data = doc.model_dump(mode="json")
    if not data["predicted"]:
        del data["predicted"]  # files without predictions keep the exact layout of before
    return json.dumps(data, indent=1) + "\n"


def profile_model(doc: ProfileDoc) -> ProfileModel:
    """The fitted models of a validated profile, ready to predict (no refitting)."""
    models = {(m.target, m.mapping): TargetModel.from_dict(m.model_dump()) for m in doc.models}
    return ProfileModel(
        domains=tuple(d.name for d in doc.space.domains),
        opp_hz=tuple(tuple(d.opp_hz) for d in doc.space.domains),
        mappings=doc.space.mappings,
        groups=doc.space.groups,
        models=models,
        simulated=doc.provenance.simulated,
        predicted=_predicted(doc.predicted),
    )


def _predicted(records: Sequence[PredictedRecord]) -> dict[str, dict[int, GroupPrediction]]:
    out: dict[str, dict[int, GroupPrediction]] = {}
    for r in records:
        out.setdefault(r.mapping, {})[r.groups] = GroupPrediction(r.groups, r.lo, r.hi, r.fraction, r.fraction_std,
                                                                  r.core, r.width)
    return out


def _point_record(space: Space, index: int, m: Measurement) -> PointRecord:
    point = space.point(index)
    return PointRecord(mapping=point.mapping, setpoints_hz={d: float(f) for d, f in point.setpoints.hz.items()},
                       groups=point.groups, latency_ms=m.latency_ms, power_mw=m.power_mw,
                       energy_mj=m.energy_mj, rails_mw=dict(m.rails_mw), simulated=m.simulated)


def build_profile_doc(model_name: str, provenance: Provenance, space: Space, settings: SamplerSettings,
                      status: SamplerStatus, measured: Mapping[int, Measurement],
                      fitted: ProfileModel, idle_power_mw: float | None = None) -> ProfileDoc:
    """Assemble a profile document from a finished sampling run."""
    points: Sequence[PointRecord] = [_point_record(space, i, m) for i, m in sorted(measured.items())]
    space_record = SpaceRecord(
        domains=tuple(DomainAxis(name=d, opp_hz=fs) for d, fs in zip(space.domains, space.opp_hz, strict=True)),
        mappings=space.mappings, groups=space.groups, channels_per_group=space.channels_per_group)
    sampling = SamplingRecord(target_mape_pct=settings.target_mape_pct, max_points=settings.max_points,
                              candidates=status.candidates, measured=status.measured, stopped=status.stopped,
                              estimated_mape_pct=dict(status.estimated_mape_pct))
    models = tuple(ModelRecord.model_validate(fitted.models[key].to_dict()) for key in sorted(fitted.models))
    predicted = tuple(PredictedRecord(mapping=mapping, groups=k, lo=p.lo, hi=p.hi, fraction=p.fraction,
                                      fraction_std=p.fraction_std, core=p.core, width=p.width)  # type: ignore[arg-type]
                      for mapping, per_k in sorted(fitted.predicted.items()) for k, p in sorted(per_k.items()))
    return ProfileDoc(model=model_name, provenance=provenance, space=space_record, sampling=sampling,
                      points=tuple(points), models=models, idle_power_mw=idle_power_mw, predicted=predicted)
