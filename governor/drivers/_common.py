"""Helpers shared by the actuator and sensor backends (private: the backends are the API).

Two rules live here because every frequency domain obeys them:

* **Limit write order.** Old kernels (cpufreq before freq-QoS, devfreq before PM-QoS, the Exynos
  Mali vendor driver) return EINVAL when a write would leave min > max. Writing the new max first
  when it is not below the current min, and the new min first otherwise, never passes through an
  inverted pair, so the same order is correct on kernels that clamp instead.
* **Baselines hold exact text.** A snapshot stores each file's bytes as read (decoded), so that
  restoring writes back what the kernel printed; the trailing newline is dropped on write because
  sysfs stores do not need it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from governor.core.board import Domain
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Baseline, Probe, ProbeResult

__all__ = [
    "DomainBase",
    "Partial",
    "check_owner",
    "failed",
    "first_match",
    "guarded",
    "nearest",
    "ok",
    "parse_int",
    "save_files",
    "sweep",
    "write_limits",
]


@dataclass(frozen=True)
class Partial:
    """A sensor sweep that may have lost some parts: ``values`` by name, ``errors`` name -> reason."""

    values: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def ok(detail: str = "") -> Probe:
    return Probe(ProbeResult.SUCCESS, detail)


def failed(detail: str) -> Probe:
    return Probe(ProbeResult.FAIL, detail)


def nearest(table: Sequence[int], value: int) -> int:
    """The table entry closest to ``value`` (ties go to the lower entry); ``value`` if no table."""
    if not table:
        return value
    return min(table, key=lambda f: (abs(f - value), f))


def parse_int(text: str) -> int:
    """An integer from sysfs text, ignoring surrounding blanks and NULs."""
    return int(text.strip().strip("\x00").split()[0])


def write_limits(
    sysfs: SysfsRoot,
    min_rel: str,
    max_rel: str,
    lo: str | int,
    hi: str | int,
    *,
    current_min: int,
    effective: Callable[[str], int] | None = None,
) -> None:
    """Write a [lo, hi] limit pair (native units) in the order every kernel accepts (see module doc).

    The first write is read back (``effective`` maps a file to the limit in force, default its
    integer) and the second is held to it: a kernel whose table differs from ours snaps the first
    value, and an old kernel would refuse a second value on the wrong side of the snapped one.
    """
    effective = effective or sysfs.read_int
    if int(hi) >= current_min:
        sysfs.write(max_rel, hi)
        got = effective(max_rel)
        sysfs.write(min_rel, lo if int(lo) <= got else got)
    else:
        sysfs.write(min_rel, lo)
        got = effective(min_rel)
        sysfs.write(max_rel, hi if int(hi) >= got else got)


def save_files(sysfs: SysfsRoot, owner: str, rels: Iterable[str]) -> Baseline:
    """Snapshot the exact text of ``rels`` (all must be readable)."""
    return Baseline(owner=owner, files=tuple((rel, sysfs.read_bytes(rel).decode("utf-8", "replace")) for rel in rels))


def check_owner(baseline: Baseline, owner: str) -> dict[str, str]:
    """The baseline's files as a dict, after making sure it belongs to ``owner``."""
    if baseline.owner != owner:
        raise ValueError(f"baseline of {baseline.owner!r} cannot restore {owner!r}")
    return dict(baseline.files)


def first_match(sysfs: SysfsRoot, patterns: Iterable[str]) -> str | None:
    """The first path any of ``patterns`` (globs, tried in order) resolves to, or None."""
    for pattern in patterns:
        hits = sysfs.glob(pattern)
        if hits:
            return hits[0]
    return None


def sweep(reads: Mapping[str, Callable[[], float]]) -> Partial:
    """Run every named read; the ones that fail on sysfs are reported with their reason, not raised."""
    errors: dict[str, str] = {}
    values = {name: guarded(errors, name, read) for name, read in reads.items()}
    return Partial({k: v for k, v in values.items() if v is not None}, errors)


def guarded(errors: dict[str, str], name: str, read: Callable[[], float]) -> float | None:
    """Run one sensor read; on a sysfs error record the reason under ``name`` and return None."""
    try:
        return read()
    except (SysfsError, ValueError, IndexError) as exc:
        errors[name] = str(exc)
        return None


class DomainBase:
    """What every frequency domain shares: identity, directory, table (native unit), Hz conversion.

    ``directory`` defaults to the first match of the catalogue ``paths`` globs.
    """

    def __init__(self, sysfs: SysfsRoot, spec: Domain, directory: str | None = None) -> None:
        self.sysfs = sysfs
        self.spec = spec
        self.name: str = spec.name
        self.kind: str = spec.kind
        self.owner = f"{spec.driver}:{spec.name}"
        self.dir = directory if directory is not None else first_match(sysfs, spec.paths) or spec.paths[0]
        self._table: tuple[int, ...] = tuple(spec.table)

    def _f(self, leaf: str) -> str:
        return f"{self.dir}/{leaf}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def available_hz(self) -> tuple[int, ...]:
        return tuple(self._hz(f) for f in self._table)

    def _hz(self, native: int) -> int:
        return native * self.spec.scale_hz

    def _native(self, hz: int) -> int:
        """``hz`` in the native unit, snapped to the nearest table entry (the kernel would snap anyway)."""
        return nearest(self._table, round(hz / self.spec.scale_hz))

    def _native_range(self, min_hz: int, max_hz: int) -> tuple[int, int]:
        if min_hz > max_hz:
            raise ValueError(f"{self.name}: min {min_hz} Hz is above max {max_hz} Hz")
        return self._native(min_hz), self._native(max_hz)
