"""devfreq devices (Jetson GPU, Odroid Mali on devfreq kernels, memory buses): Hz throughout.

Theory of operation
-------------------
The entry is found the way jetson-stats finds the Jetson GPU: scan the catalogue ``paths`` globs
(``sys/class/devfreq/*``) and take the first entry whose ``device/of_node/name`` is one of the
catalogue's ``of_node`` names (an empty list accepts the first entry). The class entry is a
symlink; its real directory is used from then on, so snapshots name real files.

Pinning, range setting, read-back and restore follow
:class:`~governor.drivers._limits.LimitsDomain` on ``min_freq``/``max_freq``, ``governor`` and
``userspace/set_freq``. The kernel snaps a request to an OPP (950 MHz on a Nano reads back 998.4).

A Jetson GPU whose devfreq node is missing while its device (the ``load`` file) exists is
rail-gated: nvgpu registers devfreq only after power-up. Like jetson_clocks (``do_gpu``: it writes
``railgate_enable`` = 0 before touching the GPU's devfreq), the probe then writes 0 to the
device's ``railgate_enable`` and looks again; pinning does the same first. The file's text as
first seen goes into the baseline and restore puts it back (written only if it differs; nvgpu
treats the same value as a no-op). Where the write fails (not root) or devfreq still does not
appear, the file is put back and the probe says DEFER rather than FAIL.
"""

from __future__ import annotations

from posixpath import dirname

from governor.core.board import Domain
from governor.core.types import DomainReading
from governor.drivers._common import check_owner, failed, ok
from governor.drivers._limits import LimitsDomain, Mode
from governor.drivers._sysfs import SysfsError, SysfsRoot
from governor.drivers.base import Baseline, Probe, ProbeResult
from governor.drivers.load import GPU_LOAD_CANDIDATES

__all__ = ["RAILGATE", "Devfreq", "find_devfreq"]

RAILGATE = "railgate_enable"  # nvgpu, on the GPU device: 1 lets the GPU power off when idle


def _of_node_name(sysfs: SysfsRoot, entry: str) -> str:
    try:
        return sysfs.read(f"{entry}/device/of_node/name").strip().strip("\x00")
    except SysfsError:
        return ""


def find_devfreq(sysfs: SysfsRoot, spec: Domain) -> str | None:
    """The real directory of the devfreq entry the catalogue describes, or None."""
    for pattern in spec.paths:
        for entry in sysfs.glob(pattern):
            if not spec.of_node or _of_node_name(sysfs, entry) in spec.of_node:
                return sysfs.realpath(entry)
    return None


class Devfreq(LimitsDomain):
    """One devfreq device. ``mode`` picks how :meth:`pin` holds a frequency (``limits``/``userspace``)."""

    CUR, MIN, MAX = "cur_freq", "min_freq", "max_freq"
    GOVERNOR, GOVERNORS, SETSPEED = "governor", "available_governors", "userspace/set_freq"

    def __init__(self, sysfs: SysfsRoot, spec: Domain, *, mode: Mode = "limits") -> None:
        super().__init__(sysfs, spec, find_devfreq(sysfs, spec) or "", mode=mode)
        self.railgate = ""  # nvgpu's railgate_enable (real path), "" where there is none
        self._railgate_found = ""  # its text when first seen: what the baseline restores

    def probe(self) -> Probe:
        self.dir = self.dir or find_devfreq(self.sysfs, self.spec) or ""
        ungated = ""
        if not self.dir and self._find_railgate():
            ungated = self._ungate()
            self.dir = find_devfreq(self.sysfs, self.spec) or ""
            if not self.dir:
                self._put_railgate_back()
        if not self.dir:
            wanted = f" with device/of_node/name in {list(self.spec.of_node)}" if self.spec.of_node else ""
            where = f"no devfreq entry at {', '.join(self.spec.paths)}{wanted}"
            if self.spec.load_path and self.sysfs.exists(self.spec.load_path):
                why = "the GPU is probably rail-gated (devfreq appears at power-up)"
                return Probe(ProbeResult.DEFER, "; ".join(n for n in (where, why, ungated) if n))
            return failed(where)
        self._find_railgate()
        if not self._table:
            self._table = tuple(sorted(int(v) for v in self.sysfs.read_list(self._f("available_frequencies"))))
        notes = [f"{len(self._table)} frequencies", self._settle_mode(), ungated]
        return ok(f"{self.dir}: " + ", ".join(n for n in notes if n))

    # -- nvgpu rail-gating ----------------------------------------------------------------------
    def _find_railgate(self) -> str:
        """The GPU device's railgate_enable: beside devfreq's ``device``, else beside the load file."""
        if not self.railgate:
            devices = [f"{self.dir}/device"] if self.dir else []
            if self.spec.kind == "gpu" and self.spec.load_path:
                devices += [dirname(p) for p in (self.spec.load_path, *GPU_LOAD_CANDIDATES[:-1])]
            found = next((f"{d}/{RAILGATE}" for d in devices if self.sysfs.exists(f"{d}/{RAILGATE}")), "")
            self.railgate = self.sysfs.realpath(found) if found else ""
        if self.railgate and not self._railgate_found:
            try:
                self._railgate_found = self.sysfs.read_bytes(self.railgate).decode("utf-8", "replace")
            except SysfsError:
                self.railgate = ""
        return self.railgate

    def _ungate(self) -> str:
        """Write railgate_enable = 0 as jetson_clocks does; returns a note for the probe ("" if nothing to do)."""
        if not self._find_railgate() or self.sysfs.read(self.railgate).strip() == "0":
            return ""
        try:
            self.sysfs.write(self.railgate, 0)
        except OSError as exc:
            return f"could not disable rail-gating at {self.railgate}: {exc}"
        return f"rail-gating disabled ({self.railgate} = 0, as jetson_clocks does; the baseline restores it)"

    def _put_railgate_back(self) -> None:
        if self.railgate and self._railgate_found:
            try:
                if self.sysfs.read(self.railgate).strip() != self._railgate_found.strip():
                    self.sysfs.write(self.railgate, self._railgate_found.strip())
            except OSError:
                pass  # nothing was changed or it cannot be written: either way there is nothing to undo

    def pin(self, hz: int) -> DomainReading:
        self._ungate()
        return super().pin(hz)

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        self._ungate()
        return super().set_range(min_hz, max_hz)

    def snapshot(self) -> Baseline:
        base = super().snapshot()
        if not self._find_railgate():
            return base
        return Baseline(owner=base.owner, files=(*base.files, (self.railgate, self._railgate_found)))

    def restore(self, baseline: Baseline) -> None:
        super().restore(baseline)
        saved = {rel: text for rel, text in check_owner(baseline, self.owner).items() if rel.endswith(f"/{RAILGATE}")}
        for rel, text in saved.items():
            if self.sysfs.read(rel).strip() != text.strip():
                self.sysfs.write(rel, text.strip())
