"""Daemon configuration: declared once, validated at load, before any hardware write.

The file is TOML (``systemd/governor.toml`` documents every key). Command-line flags override the
file; the result is a frozen :class:`Config`. ``governor serve --dump-config`` prints the effective
values. Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from governor.core.decision.machine import MachineSettings
from governor.core.decision.optimiser import Objective

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Config", "ConfigError", "default_profile_path", "default_runtime_dir", "default_state_dir", "load_config",
           "machine_settings"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


def default_runtime_dir() -> Path:
    """Where the ipc socket lives: systemd's RuntimeDirectory, else XDG, else /run or /tmp."""
    if os.environ.get("RUNTIME_DIRECTORY"):
        return Path(os.environ["RUNTIME_DIRECTORY"].split(":")[0])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "governor"
    if os.geteuid() == 0:
        return Path("/run/governor")
    return Path(f"/tmp/governor-{os.geteuid()}")


def default_state_dir() -> Path:
    """Where the baseline state file lives: systemd's StateDirectory, else /var/lib or ~/.local/state."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    if os.geteuid() == 0:
        return Path("/var/lib/governor")
    return Path.home() / ".local" / "state" / "governor"


MODEL_NAME_CHARS = 64  # a model is named by its file's stem, cut to this many characters


def default_profile_path(model: str, board: str) -> Path:
    """The one place a model's profile for a board lives: ``<state dir>/profiles/<model>/<board>.json``.

    ``governor profile`` writes there by default and ``governor serve`` loads from there (or profiles
    at first start and saves there). ``model`` is the model file's stem, ``board`` the profile label
    (the catalogue name, ``sim-NAME`` for a simulated board)."""
    return default_state_dir() / "profiles" / model[:MODEL_NAME_CHARS] / f"{board}.json"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DaemonSection(_Section):
    endpoint: str = Field(default="", description="ipc://PATH or tcp://HOST:PORT; '' = ipc socket in the runtime dir")
    telemetry_endpoint: str = Field(default="", description="PUB endpoint; '' = next to the request socket")
    board: str = Field(default="auto", description="catalogue name, 'auto', or 'sim:NAME'")
    sysfs_root: str = Field(default="/", description="the root that stands in for / (tests point it at fake trees)")
    model: str = Field(default="", description="model file; '' = the bundled digits model")
    profile: str = Field(default="", description=(
        "profile JSON from `governor profile`, loaded or refused (never re-measured); '' = "
        "<state dir>/profiles/<model>/<board>.json, measured and saved there at first start if missing"))
    profile_points: int = Field(default=0, ge=0, description="first-start profiling budget; 0 = 24 per mapping")
    tick_hz: float = Field(default=10.0, gt=0, le=1000)
    state_file: str = Field(default="", description="baseline state file; '' = <state dir>/baseline.json")
    rollback: Literal["always", "not_on_shutdown", "never"] = "always"
    max_message_bytes: int = Field(default=64 * 2**20, gt=1024)
    max_queue: int = Field(default=256, ge=1)
    busy_poll_us: int = Field(default=500, ge=0, le=100_000, description=(
        "under dense traffic (a message < 5 ms ago), poll the socket without sleeping for up to this many "
        "us before blocking; cuts round-trip latency, costs CPU only while busy; 0 = never"))
    watchdog: bool = True
    engine: Literal["internal", "external"] = Field(default="internal", description=(
        "internal: the daemon runs the model (infer) and may govern leases too; external: the application "
        "owns the engine, the daemon serves leases and advise only, loads no torch, and needs a profile"))
    lease_ttl_ms: float = Field(default=1000.0, gt=0, le=60_000, description=(
        "how long a lease (acquire) lives when the request names no ttl_ms: unreleased by then, the board "
        "is the daemon's again"))
    stream_ttl_ms: float = Field(default=2000.0, gt=0, le=60_000, description=(
        "how long a stream (stream_open) may go without a stream_report when the request names no ttl_ms: "
        "silent that long, it ends and its clocks go back to the idle policy"))

    @field_validator("endpoint", "telemetry_endpoint")
    @classmethod
    def _endpoint(cls, v: str) -> str:
        if v and not v.startswith(("ipc://", "tcp://", "inproc://")):
            raise ValueError(f"{v!r} is not a ZeroMQ endpoint (use ipc://PATH or tcp://HOST:PORT)")
        return v


class PolicySection(_Section):
    objective: Literal["min_energy", "max_accuracy", "min_latency"] = Field(default="min_energy", description=(
        "for requests whose budget names no objective"))
    hysteresis: float = Field(default=0.05, ge=0, le=1)
    idle_clocks: Literal["release", "lowest", "keep"] = "release"
    park_ms: float = Field(default=150.0, ge=0, le=10_000, description=(
        "with idle_clocks = release and nobody else busy: park the clocks at their lowest this long "
        "before handing them back; 0 = hand back at once"))
    switch_ms: float = Field(default=-1.0, description="DVFS transition time; negative = measure at start")
    min_margin: float = Field(default=0.02, ge=0, le=1)
    max_margin: float = Field(default=2.0, ge=0, le=5)
    residual_alpha: float = Field(default=0.2, gt=0, le=1)
    idle_grace_ms: float = Field(default=2.0, ge=0, le=1000, description=(
        "after a run, wait this long for the next request before the idle-clock policy acts: a client that "
        "waits on each reply asks again within a fraction of a millisecond"))


class AccessSection(_Section):
    socket_mode: int = Field(default=0o660, ge=0, le=0o777)
    socket_group: str = "governor"
    curve_server_secret: str = Field(default="", description="secret key file; required for tcp endpoints")
    curve_authorized_dir: str = Field(default="", description="directory of allowed client public keys")
    curve_allow_any: bool = Field(default=False, description="let in any client that knows the server's public key")


class MetricsSection(_Section):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=1, le=65535)


class SensorsSection(_Section):
    source: str = Field(default="auto", description=(
        "where rails, temperatures and load come from: 'auto' (jtop if its service answers, else tegrastats "
        "on a Jetson, else sysfs), 'sysfs', 'jtop' or 'tegrastats'; clocks are always read from sysfs"))

    @field_validator("source")
    @classmethod
    def _source(cls, v: str) -> str:
        choices = ("auto", "sysfs", "jtop", "tegrastats")  # governor.drivers.sources.SOURCES
        if v not in choices:
            raise ValueError(f"{v!r} is not a sensor source; use one of {', '.join(repr(c) for c in choices)}")
        return v


class Config(_Section):
    daemon: DaemonSection = DaemonSection()
    policy: PolicySection = PolicySection()
    access: AccessSection = AccessSection()
    metrics: MetricsSection = MetricsSection()
    sensors: SensorsSection = SensorsSection()

    def endpoint(self) -> str:
        return self.daemon.endpoint or f"ipc://{default_runtime_dir() / 'governor.sock'}"

    def state_file(self) -> Path:
        return Path(self.daemon.state_file) if self.daemon.state_file else default_state_dir() / "baseline.json"

    def with_overrides(self, **daemon: Any) -> Config:
        """A copy with [daemon] keys replaced (None values are ignored), validated again."""
        changes = {k: v for k, v in daemon.items() if v is not None}
        merged = {**self.daemon.model_dump(), **changes}
        return self.model_copy(update={"daemon": _validated(DaemonSection, merged, "command line")})


def _validated(model: type[BaseModel], data: dict[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def _describe(exc: ValidationError, source: str) -> str:
    return f"{source}: " + "; ".join(
        f"key '{'.'.join(str(p) for p in err['loc'])}': {err['msg']}" for err in exc.errors()
    )


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the config file: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from exc
    return _validated(Config, data, str(p))  # type: ignore[no-any-return]


def machine_settings(config: Config, **overrides: object) -> MachineSettings:
    """The governor machine's settings from the config: the one place their defaults live (``serve`` and
    ``evaluate`` both build them here; ``overrides`` replace single fields, e.g. a policy's idle_clocks)."""
    pol, d = config.policy, config.daemon
    settings = MachineSettings(
        hysteresis=pol.hysteresis, switch_ms=pol.switch_ms, min_margin=pol.min_margin, max_margin=pol.max_margin,
        residual_alpha=pol.residual_alpha, idle_clocks=pol.idle_clocks, park_s=pol.park_ms / 1000.0,
        idle_grace_s=pol.idle_grace_ms / 1000.0, max_queue=d.max_queue,
        objective=Objective(pol.objective))
    return dataclasses.replace(settings, **overrides)  # type: ignore[arg-type]
