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
rail-gated: nvgpu registers devfreq only after power-up, so the probe says DEFER rather than FAIL.
The probe writes nothing (``governor status`` probes too). Like jetson_clocks (``do_gpu``: it
writes ``railgate_enable`` = 0 before touching the GPU's devfreq), :meth:`Devfreq.hold_power`
writes 0 to the device's ``railgate_enable``, a :class:`RailGate` with a baseline of its own. The
daemon calls it (:meth:`Board.hold_power`) only once the board's baseline, ``railgate_enable`` as
found included, is in its state file, so a crash at any moment leaves something ``governor
restore`` puts back. Pinning holds the power first where nobody did.
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

__all__ = ["RAILGATE", "Devfreq", "RailGate", "find_devfreq"]

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
        self.gate: RailGate | None = None  # nvgpu's railgate_enable for this GPU, where there is one

    def probe(self) -> Probe:
        """Finds the entry and the GPU's railgate_enable; writes nothing (``status`` probes too)."""
        self.dir = self.dir or find_devfreq(self.sysfs, self.spec) or ""
        self._find_gate()
        if not self.dir:
            wanted = f" with device/of_node/name in {list(self.spec.of_node)}" if self.spec.of_node else ""
            where = f"no devfreq entry at {', '.join(self.spec.paths)}{wanted}"
            if self.spec.load_path and self.sysfs.exists(self.spec.load_path):
                why = "the GPU is probably rail-gated (devfreq appears at power-up)"
                if self.gate is not None:
                    why += (f"; governor serve disables rail-gating ({self.gate.path} = 0, as jetson_clocks does) "
                            "once the board's baseline is saved, and restores it at exit")
                return Probe(ProbeResult.DEFER, f"{where}; {why}")
            return failed(where)
        if not self._table:
            self._table = tuple(sorted(int(v) for v in self.sysfs.read_list(self._f("available_frequencies"))))
        gated = f"rail-gating at {self.gate.path}" if self.gate is not None else ""
        notes = [f"{len(self._table)} frequencies", self._settle_mode(), gated]
        return ok(f"{self.dir}: " + ", ".join(n for n in notes if n))

    def _find_gate(self) -> None:
        """The GPU device's railgate_enable: beside devfreq's ``device``, else beside the load file."""
        if self.gate is not None:
            return
        devices = [f"{self.dir}/device"] if self.dir else []
        if self.spec.kind == "gpu" and self.spec.load_path:
            devices += [dirname(p) for p in (self.spec.load_path, *GPU_LOAD_CANDIDATES[:-1])]
        found = next((f"{d}/{RAILGATE}" for d in devices if self.sysfs.exists(f"{d}/{RAILGATE}")), "")
        if found:
            self.gate = RailGate(self.sysfs, self.spec.name, self.sysfs.realpath(found))

    def hold_power(self) -> str:
        """Hold the GPU up (:meth:`RailGate.hold`) and look for a devfreq entry that was missing; a note."""
        if self.gate is None:
            return ""
        note = self.gate.hold()
        self.dir = self.dir or find_devfreq(self.sysfs, self.spec) or ""
        return note

    def pin(self, hz: int) -> DomainReading:
        self._held_up()
        return super().pin(hz)

    def set_range(self, min_hz: int, max_hz: int) -> DomainReading:
        self._held_up()
        return super().set_range(min_hz, max_hz)

    def _held_up(self) -> None:
        """Before a write: hold the GPU up where a caller saved the baseline but held nothing."""
        if self.gate is not None and not self.gate.held:
            self.gate.hold()


class RailGate:
    """nvgpu's ``railgate_enable`` on one GPU device, an actuator of its own (owner ``railgate:NAME``):
    1 lets the GPU power off when idle, and devfreq exists only while it is up.

    :meth:`hold` writes 0, as jetson_clocks does; call it only after :meth:`snapshot` went into a saved
    baseline. The text before that write stays what :meth:`snapshot` returns, so a baseline taken
    after the write still restores the file as found. An actuator apart from the devfreq domain, so
    that a GPU whose devfreq node vanished still gets its rail-gating back."""

    def __init__(self, sysfs: SysfsRoot, domain: str, path: str) -> None:
        self.sysfs, self.path = sysfs, path
        self.name = self.owner = f"railgate:{domain}"
        self.held = False  # hold ran (successfully or not)
        self._before: str | None = None  # the file's text before we wrote it

    def snapshot(self) -> Baseline:
        text = self._before if self._before is not None else self.sysfs.read_bytes(self.path).decode("utf-8")
        return Baseline(owner=self.owner, files=((self.path, text),))

    def hold(self) -> str:
        """railgate_enable = 0; a note ("" when it was 0 already)."""
        self.held = True
        try:
            before = self.sysfs.read_bytes(self.path).decode("utf-8", "replace")
            if before.strip() == "0":
                return ""
            if self._before is None:
                self._before = before
            self.sysfs.write(self.path, 0)
        except OSError as exc:
            return f"could not disable rail-gating at {self.path}: {exc}"
        return f"rail-gating disabled ({self.path} = 0, as jetson_clocks does; restored at exit)"

    def restore(self, baseline: Baseline) -> None:
        """Write the saved text back, only if it differs (nvgpu treats the same value as a no-op)."""
        for rel, text in check_owner(baseline, self.owner).items():
            if self.sysfs.read(rel).strip() != text.strip():
                self.sysfs.write(rel, text.strip())
        self._before, self.held = None, False
