"""Non-CPU clocks: devfreq nodes (GPU), the Jetson EMC in debugfs, the Odroid vendor Mali driver.

devfreq nodes live under their device (``.../17000000.gpu/devfreq/17000000.gpu``) with a class
link in ``sys/class/devfreq``, a ``device`` link back, and the device's ``of_node`` (a device-tree
node whose ``name`` is NUL-terminated, as every DT property is). Jetson GPUs also get nvgpu's
device files next to ``load``: ``railgate_enable``, ``enable_3d_scaling``. The EMC has no
devfreq node before JetPack 7, only the debugfs override files jetson_clocks uses.
"""

from __future__ import annotations

import re
from posixpath import basename, dirname

from governor.core.board import BoardSpec, Domain
from governor.testing._build import BuildContext, domain_dir, is_modern, write_all
from governor.testing._formats import devfreq_list, devfreq_trans_stat, dt_string, dt_strings
from governor.testing._fs import READ_ONLY, TreeFiles

__all__ = ["build_devfreq_node", "build_domains"]

WRITE_ONLY = 0o200  # debugfs store-only attributes (root can still read them)
DEFAULT_DEVFREQ_GOVERNORS = ("simple_ondemand", "performance", "powersave", "userspace")
DT_BASE = "sys/firmware/devicetree/base"
_GPU_COMPATIBLE = {
    "tegra210": "nvidia,tegra210-gm20b",
    "tegra186": "nvidia,gp10b",
    "tegra194": "nvidia,gv11b",
    "tegra234": "nvidia,ga10b",
    "exynos5422": "arm,mali-t628",
}


def build_domains(ctx: BuildContext) -> None:
    builders = {"devfreq": _devfreq, "tegra-emc-bpmp": _emc_bpmp, "tegra-emc-t210": _emc_t210, "mali-vendor": _mali}
    for domain in ctx.spec.domains:
        if domain.driver in builders:
            builders[domain.driver](ctx, domain)


def _idle(domain: Domain, governor: str) -> int:
    return domain.table[-1] if governor == "performance" else domain.table[0]


def build_devfreq_node(files: TreeFiles, spec: BoardSpec, domain: Domain) -> str:
    """The devfreq directory, its class link and ``device`` link; returns the real directory."""
    real = domain_dir(domain)
    governors = domain.governors or DEFAULT_DEVFREQ_GOVERNORS
    governor = domain.default_governor or governors[0]
    idle = _idle(domain, governor)
    ro: dict[str, object] = {
        "available_frequencies": devfreq_list(domain.table),
        "available_governors": devfreq_list(governors),
        "cur_freq": idle,
        "target_freq": idle,
        "trans_stat": devfreq_trans_stat(domain.table, idle),
    }
    device = dirname(dirname(real))
    if is_modern(spec):
        ro["name"] = basename(device)
    write_all(
        files,
        real,
        ro,
        {"governor": governor, "min_freq": domain.table[0], "max_freq": domain.table[-1], "polling_interval": 50},
    )
    files.link(f"{real}/device", device)
    files.link(f"sys/class/devfreq/{basename(real)}", real)
    return real


def _devfreq(ctx: BuildContext, domain: Domain) -> None:
    real = build_devfreq_node(ctx.files, ctx.spec, domain)
    device = dirname(dirname(real))
    address, _, _ = basename(device).partition(".")
    node_name = domain.of_node[0] if domain.of_node else basename(device).partition(".")[2]
    node = f"{DT_BASE}/{node_name}@{address}"
    ctx.files.write(f"{node}/name", dt_string(node_name), READ_ONLY, atomic=False)
    compatible = _GPU_COMPATIBLE.get(ctx.spec.board.soc, f"generic,{node_name}")
    ctx.files.write(f"{node}/compatible", dt_strings([compatible]), READ_ONLY, atomic=False)
    ctx.files.link(f"{device}/of_node", node)
    ctx.rule_dir(real, kind="devfreq", table=list(domain.table), limits=ctx.spec.board.limit_writes)
    if domain.kind == "gpu" and domain.load_path and ctx.spec.board.family == "jetson":
        _nvgpu_device(ctx, domain, real)


def _kernel_version(spec: BoardSpec) -> tuple[int, int]:
    """The kernel the catalogue's ``software`` names ("..., kernel 5.10.120-tegra"); 4.9 if none."""
    found = re.search(r"kernel (\d+)\.(\d+)", spec.board.software)
    return (int(found[1]), int(found[2])) if found else (4, 9)


def _nvgpu_device(ctx: BuildContext, domain: Domain, real: str) -> None:
    """nvgpu's files in its own device (the devfreq node's parent), and the links nvgpu makes to it.

    nvgpu_create_sysfs (nvgpu ``os/linux/sysfs.c``) puts ``load`` (per-mille), ``railgate_enable``
    and the rest on the GPU device itself, then links ``gpu.0`` to it from the device's parent;
    on kernels after 4.14 also ``gpu.0`` and the device's own name one level up, because there the
    parent is ``devices/platform`` (or a bus) and tests expect ``/sys/devices/gpu.0``. So on
    JetPack 4 ``sys/devices/gpu.0`` -> ``57000000.gpu``; on JetPack 5 ``sys/devices/gpu.0``,
    ``sys/devices/platform/gpu.0`` and ``sys/devices/17000000.gv11b`` all reach
    ``sys/devices/platform/17000000.gv11b``. Optionally start rail-gated (no devfreq yet).
    """
    device = dirname(dirname(real))
    rw = {"railgate_enable": 1, "enable_3d_scaling": 1, "power/control": "auto"}
    write_all(ctx.files, device, {"load": 0, "is_railgated": "no"}, rw)
    parents = [dirname(device)]
    if _kernel_version(ctx.spec) > (4, 14) and dirname(dirname(device)):
        parents.append(dirname(dirname(device)))
    for parent in parents:
        for name in ("gpu.0", basename(device)) if parent != parents[0] else ("gpu.0",):
            if not ctx.files.exists(f"{parent}/{name}"):
                ctx.files.link(f"{parent}/{name}", device)
    if ctx.files.abs(domain.load_path).resolve() != ctx.files.abs(f"{device}/load").resolve():
        raise ValueError(f"domain {domain.name!r}: load_path {domain.load_path!r} is not {device}/load or a link to it")
    if ctx.variant == "railgated":
        ctx.files.remove(real)
        ctx.files.remove(f"sys/class/devfreq/{basename(real)}")
        ctx.files.write(f"{device}/is_railgated", "yes\n", READ_ONLY, atomic=False)
    ctx.rule_file(f"{device}/railgate_enable", kind="railgate", domain=domain.name)


def _emc_extras(ctx: BuildContext) -> None:
    """nvpmodel's EMC cap (0 = none) and the memory-controller activity counter, idle."""
    ctx.files.write("sys/kernel/nvpmodel_emc_cap/emc_iso_cap", "0\n", READ_ONLY, atomic=False)
    actmon = "sys/kernel/debug/cactmon/mc_all" if is_modern(ctx.spec) else "sys/kernel/actmon_avg_activity/mc_all"
    ctx.files.write(actmon, "0\n", READ_ONLY, atomic=False)


def _emc_bpmp(ctx: BuildContext, domain: Domain) -> None:
    d, t = domain_dir(domain), domain.table
    write_all(ctx.files, d, {"min_rate": t[0], "max_rate": t[-1], "state": 1}, {"rate": t[0], "mrq_rate_locked": 0})
    ctx.rule_dir(d, kind="emc-bpmp", table=list(t))
    _emc_extras(ctx)


def _emc_t210(ctx: BuildContext, domain: Domain) -> None:
    d, t = domain_dir(domain), domain.table
    clk = dirname(d)
    write_all(ctx.files, d, {"clk_rate": t[0]}, {"clk_state": 0})
    # Mode 0200, and its read op is the state's (tegra_clk_debugfs_add): root reads 0/1, not a rate.
    ctx.files.write(f"{d}/clk_update_rate", "0\n", WRITE_ONLY, atomic=False)
    write_all(ctx.files, f"{clk}/emc", {"clk_rate": t[0], "clk_min_rate": t[0], "clk_max_rate": t[-1]})
    write_all(ctx.files, f"{dirname(clk)}/tegra_bwmgr", {"emc_min_rate": t[0], "emc_max_rate": t[-1]})
    ctx.rule_dir(d, kind="emc-t210", table=list(t), emc_rate=f"{clk}/emc/clk_rate", rate=t[0], enables=0)
    _emc_extras(ctx)


def _mali(ctx: BuildContext, domain: Domain) -> None:
    """Samsung's midgard sysfs (MHz): ``-1`` reads mean unlocked; dvfs_table lists the top first."""
    d, t = domain_dir(domain), domain.table
    ro = {
        "dvfs_table": "".join(f" {f}" for f in reversed(t)) + "\n",
        "utilization": 0,
        "time_in_state": "".join(f"{f} 0\n" for f in t),
    }
    write_all(ctx.files, d, ro, {"clock": t[0], "dvfs": 1, "dvfs_min_lock": -1, "dvfs_max_lock": -1})
    ctx.files.link(f"sys/bus/platform/drivers/mali/{basename(d)}", d)
    ctx.files.link(f"{d}/misc/mali0/device", d)
    ctx.files.link("sys/class/misc/mali0", f"{d}/misc/mali0")
    ctx.rule_dir(d, kind="mali-vendor", table=list(t), limits=ctx.spec.board.limit_writes)
