"""The Odroid Mali's layouts that differ by kernel: the devfreq node's name on Hardkernel 4.14.

Hardkernel's 4.14 kernel (and the scripts written for it) name the Mali devfreq node by number,
``sys/devices/platform/11800000.mali/devfreq/devfreq0`` with ``sys/class/devfreq/devfreq0``,
where other kernels name it after its device (``.../devfreq/11800000.mali``, the catalogue's
``real_path``). The ``devfreq-numbered`` variant renames every devfreq node of a built tree to
``devfreqN`` in catalogue order, moving its class link and its kernel rule with it; the node's
``device`` link is relative and one level deep either way, so it still reaches the device.
"""

from __future__ import annotations

import os
from posixpath import basename, dirname

from governor.testing._build import BuildContext, domain_dir

__all__ = ["NUMBERED", "number_devfreq_nodes"]

NUMBERED = "devfreq-numbered"


def number_devfreq_nodes(ctx: BuildContext) -> None:
    """Rename each devfreq node to ``devfreqN`` (only for the ``devfreq-numbered`` variant)."""
    if ctx.variant != NUMBERED:
        return
    devfreqs = [d for d in ctx.spec.domains if d.driver == "devfreq"]
    for number, domain in enumerate(devfreqs):
        real = domain_dir(domain)
        if not ctx.files.exists(real):
            continue
        numbered = f"{dirname(real)}/devfreq{number}"
        os.rename(ctx.files.abs(real), ctx.files.abs(numbered))
        ctx.files.remove(f"sys/class/devfreq/{basename(real)}")
        ctx.files.link(f"sys/class/devfreq/devfreq{number}", numbered)
        rule = ctx.state["nodes"].pop(real, None)
        if rule is not None:
            ctx.state["nodes"][numbered] = rule
