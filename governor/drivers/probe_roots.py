"""What ``governor probe-report`` walks: the subtrees the drivers and the catalogue look at, and no more.

Paths are relative to the board root, as everywhere in the drivers (``sys/...`` stands for ``/sys/...``);
globs are expanded at run time. A root that matches nothing is reported absent, which tells as much as
its content would (a missing debugfs, a JetPack without ``gpu.0``). ``tests/drivers`` checks that every
path the catalogue names lies inside one of these roots, so a new board file cannot outgrow the report.

How links are followed (never by the operating system: each link is resolved inside the root, so
nothing outside it, and never ``/dev``, is read):

* a root that is a link, or a link directly inside a root directory (the entries of ``sys/class/*``
  and ``sys/bus/*/drivers/*`` are all links into ``sys/devices``), is followed when its target lies
  in :data:`FOLLOW_INTO`, with the full depth;
* a ``device`` link directly inside such a followed entry is followed one level (its files and links,
  not its subdirectories): the devfreq driver reads ``device/of_node/name`` and GPU load reads
  ``device/load``;
* an ``of_node`` link is followed one level into the device tree (the node's properties: ``name``,
  ``compatible``), because the devfreq driver matches devices by ``of_node/name``;
* every other link is recorded with its target and not followed (``subsystem``, ``driver``, ``module``
  lead into the whole of sysfs).
"""

from __future__ import annotations

__all__ = ["DT_LINK_INTO", "FOLLOW_INTO", "PROBE_ROOTS", "SKIP_NAME_PATTERNS"]

PROBE_ROOTS: tuple[str, ...] = (
    # cpufreq.py: POLICY_GLOB policy*/ and the catalogue's cpufreq paths (policyN on kernels >= 4.3)
    "sys/devices/system/cpu/cpufreq",
    # cpufreq.py: cpuK/cpufreq, a directory of its own before Linux 4.3 (odroid-xu3.toml), else a link
    "sys/devices/system/cpu/cpu[0-9]*/cpufreq",
    # hotplug.py: cpuK/online
    "sys/devices/system/cpu/cpu[0-9]*/online",
    # the CPU masks beside them: what the kernel calls online/present while the report was taken
    "sys/devices/system/cpu/online",
    "sys/devices/system/cpu/present",
    "sys/devices/system/cpu/possible",
    # devfreq.py and every catalogue devfreq domain: paths = ["sys/class/devfreq/*"]
    "sys/class/devfreq",
    # emc.py tegra-emc-bpmp (TX2, Xavier, Orin: jetson-*.toml paths)
    "sys/kernel/debug/bpmp/debug/clk/emc",
    # emc.py tegra-emc-t210 (Nano: jetson-nano.toml paths), the plain clock beside it, and the
    # bandwidth manager's emc_{min,max}_rate that T210Emc reads its limits from
    "sys/kernel/debug/clk/override.emc",
    "sys/kernel/debug/clk/emc",
    "sys/kernel/debug/tegra_bwmgr",
    # emc.py EMC_ISO_CAP (nvpmodel's cap), and the memory-controller activity the fake trees build
    "sys/kernel/nvpmodel_emc_cap",
    "sys/kernel/actmon_avg_activity",
    "sys/kernel/debug/cactmon",
    # nvgpu devices: the catalogue's real_path/load_path (jetson-nano: 57000000.gpu and gpu.0;
    # jetson-tx2: gpu.0 holding 17000000.gp10b; jetson-xavier-nx: 17000000.gv11b; Orin R36:
    # platform/bus@0/17000000.gpu) and load.py's candidates (platform/gpu.0, platform/17000000.gv11b);
    # JetPack 5 Orin names the GPU 17000000.ga10b (docs/boards.md)
    "sys/devices/gpu.0",
    "sys/devices/platform/gpu.0",
    "sys/devices/57000000.gpu",
    "sys/devices/17000000.gp10b",
    "sys/devices/17000000.gv11b",
    "sys/devices/platform/17000000.gv11b",
    "sys/devices/platform/17000000.ga10b",
    "sys/devices/platform/bus@0/17000000.gpu",
    "sys/devices/platform/bus@0/17000000.ga10b",
    # mali.py (odroid-xu3.toml: sys/devices/11800000.mali) and the Mali devfreq device (odroid-xu4.toml)
    "sys/devices/*mali*",
    "sys/devices/platform/*mali*",
    # thermal.py ZONE_GLOBS
    "sys/class/thermal/thermal_zone*",
    "sys/devices/virtual/thermal/thermal_zone*",
    # power.py: ina3221-hwmon, ina2xx-hwmon (hwmon/hwmon*) and their class
    "sys/class/hwmon",
    # power.py: the catalogue's [[power]] path (bus driver directories: ina3221x iio on R32,
    # ina3221 hwmon on R35+, Hardkernel's INA231, mainline ina2xx)
    "sys/bus/i2c/drivers/ina3221x",
    "sys/bus/i2c/drivers/ina3221",
    "sys/bus/i2c/drivers/INA231",
    "sys/bus/i2c/drivers/ina2xx",
    # power.py ina3221-iio: iio:device* (numbers change between boots)
    "sys/bus/iio/devices",
    # power.py rapl (docs/boards.md: a site copy may add sys/class/powercap/intel-rapl:0)
    "sys/class/powercap",
    # detect.py COMPATIBLE and MODEL (proc/device-tree is a link into sys/firmware/devicetree/base)
    "proc/device-tree/model",
    "proc/device-tree/compatible",
    # the L4T release (catalogue `software`; fake trees build it) and the kernel the tree describes
    "etc/nv_tegra_release",
    "proc/version",
)

# Where a followed class or bus link may lead: the devices themselves.
FOLLOW_INTO: tuple[str, ...] = ("sys/devices/",)

# Where an of_node link may lead: the device tree, one node at a time.
DT_LINK_INTO: tuple[str, ...] = ("sys/firmware/devicetree/", "proc/device-tree/")

# Never read: a read of these may start an action or never end (LED and IIO triggers, sysrq-like
# nodes); the entry is still recorded, marked skipped, so the layout stays whole.
SKIP_NAME_PATTERNS: tuple[str, ...] = ("*trigger*",)
