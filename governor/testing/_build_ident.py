"""What identifies the machine: device tree, ``/etc/nv_tegra_release``, ``/proc/version``.

``proc/device-tree`` is a link to ``sys/firmware/devicetree/base`` as on a real system; its
properties are NUL-terminated and ``compatible`` is a NUL-separated list. A generic host has no
device tree at all (x86 firmware describes itself through ACPI).
"""

from __future__ import annotations

import re

from governor.testing._build import BuildContext
from governor.testing._formats import dt_string, dt_strings
from governor.testing._fs import READ_ONLY

__all__ = ["build_identity", "nv_tegra_release"]

DT_BASE = "sys/firmware/devicetree/base"


def nv_tegra_release(software: str) -> str:
    """The release file of the L4T version named in the catalogue's ``software`` text."""
    found = re.search(r"R(\d+)(?:\.(\d+(?:\.\d+)?))?", software)
    major, revision = (found.group(1), found.group(2) or "0") if found else ("0", "0")
    return (
        f"# R{major} (release), REVISION: {revision}, GCID: 00000000, BOARD: generic, EABI: aarch64, "
        "DATE: Thu Jan  1 00:00:00 UTC 2026\n"
        "# KERNEL_VARIANT: oot\n"
        "TARGET_USERSPACE_LIB_DIR=nvidia\n"
        "TARGET_USERSPACE_LIB_DIR_PATH=usr/lib/aarch64-linux-gnu/nvidia\n"
    )


def _kernel_release(software: str, family: str) -> str:
    found = re.search(r"kernel\s+([0-9][\w.+-]*)", software) or re.search(r"Linux\s+([0-9][\w.+-]*)", software)
    release = found.group(1) if found else "6.1.0"
    return f"{release}-tegra" if family == "jetson" and "tegra" not in release else release


def build_identity(ctx: BuildContext) -> None:
    spec, files = ctx.spec, ctx.files
    ident = spec.identify
    if ident.model_example or ident.compatible_example:
        files.write(f"{DT_BASE}/model", dt_string(ident.model_example), READ_ONLY, atomic=False)
        files.write(f"{DT_BASE}/compatible", dt_strings(ident.compatible_example), READ_ONLY, atomic=False)
        files.link("proc/device-tree", DT_BASE)
    if spec.board.family == "jetson":
        files.write("etc/nv_tegra_release", nv_tegra_release(spec.board.software), READ_ONLY, atomic=False)
    release = _kernel_release(spec.board.software, spec.board.family)
    version = f"Linux version {release} (fake@governor.testing) (gcc) #1 SMP PREEMPT (simulated tree)\n"
    files.write("proc/version", version, READ_ONLY, atomic=False)
