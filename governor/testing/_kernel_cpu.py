"""Fake kernel behaviour of cpufreq policies and CPU hotplug.

cpufreq: ``scaling_{min,max}_freq`` follow :func:`~governor.testing._kernel.limit_pair`; the
governor must be one of ``scaling_available_governors``; ``scaling_setspeed`` is writable only
under ``userspace`` and otherwise reads ``<unsupported>``. After every write the current frequency
is recomputed from governor and limits: performance -> max, powersave -> min, userspace -> the set
speed kept inside the limits, any dynamic governor -> min (the fake board is idle).

Hotplug: ``cpuK/online`` takes 0/1 (``kstrtobool``); the online/offline lists, the policy's
``affected_cpus`` and ``/proc/stat`` (which lists online CPUs only) follow. On pre-4.3 layouts the
CPU's ``cpufreq`` symlink goes away while it is offline.
"""

from __future__ import annotations

import errno
from typing import Any

from governor.testing._formats import cpu_ranges, parse_cpu_ranges, snap_up, space_list
from governor.testing._kernel import KernelIO, limit_pair, parse_uint, reject

__all__ = ["cpu_online_write", "cpufreq_write"]

CPU_DIR = "sys/devices/system/cpu"
_BOOL = {"1": True, "y": True, "on": True, "0": False, "n": False, "off": False}


def cpufreq_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    table = rule["table"]
    if leaf == "scaling_governor":
        wanted = text.strip()
        if wanted not in k.read(f"{node}/scaling_available_governors").split():
            raise reject(errno.EINVAL, f"governor {wanted!r} is not in scaling_available_governors")
        k.put(f"{node}/scaling_governor", wanted)
    elif leaf in ("scaling_min_freq", "scaling_max_freq"):
        cur = (k.read_int(f"{node}/scaling_min_freq"), k.read_int(f"{node}/scaling_max_freq"))
        lo, hi = limit_pair(table, rule["limits"], cur, parse_uint(text), is_min=leaf == "scaling_min_freq")
        k.put(f"{node}/scaling_min_freq", lo)
        k.put(f"{node}/scaling_max_freq", hi)
    elif leaf == "scaling_setspeed":
        if k.read(f"{node}/scaling_governor") != "userspace":
            raise reject(errno.EINVAL, "scaling_setspeed works only with the userspace governor")
        lo, hi = k.read_int(f"{node}/scaling_min_freq"), k.read_int(f"{node}/scaling_max_freq")
        k.put(f"{node}/scaling_cur_freq", snap_up(table, min(max(parse_uint(text), lo), hi)))
    else:
        return False
    _recompute(k, node)
    return True


def _recompute(k: KernelIO, node: str) -> None:
    governor = k.read(f"{node}/scaling_governor")
    lo, hi = k.read_int(f"{node}/scaling_min_freq"), k.read_int(f"{node}/scaling_max_freq")
    cur = k.read_int(f"{node}/scaling_cur_freq")
    if governor == "performance":
        cur = hi
    elif governor == "userspace":
        cur = min(max(cur, lo), hi)
    else:
        cur = lo
    k.put(f"{node}/scaling_cur_freq", cur)
    k.put(f"{node}/cpuinfo_cur_freq", cur)
    k.put(f"{node}/scaling_setspeed", cur if governor == "userspace" else "<unsupported>")


def cpu_online_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    wanted = _BOOL.get(text.strip().lower())
    if wanted is None:
        raise reject(errno.EINVAL, f"online takes 0 or 1, not {text.strip()!r}")
    was = k.read(node) == "1"
    k.put(node, int(wanted))
    if was == wanted:
        return True
    cpu = rule["cpu"]
    online = set(parse_cpu_ranges(k.read(f"{CPU_DIR}/online")))
    online = online | {cpu} if wanted else online - {cpu}
    possible = set(parse_cpu_ranges(k.read(f"{CPU_DIR}/possible")))
    k.put(f"{CPU_DIR}/online", cpu_ranges(online))
    k.put(f"{CPU_DIR}/offline", cpu_ranges(possible - online))
    if rule["policy"]:
        k.put(f"{rule['policy']}/affected_cpus", space_list(c for c in rule["cpus"] if c in online))
    if rule["link"]:
        if wanted:
            k.files.link(rule["link"], rule["policy"])
        else:
            k.remove(rule["link"])
    _proc_stat(k, cpu, wanted)
    return True


def _proc_stat(k: KernelIO, cpu: int, online: bool) -> None:
    """Drop an offline CPU's line (kept in the marker) and put it back, in order, when it returns."""
    if not k.exists("proc/stat"):
        return
    lines = k.files.read("proc/stat").split("\n")
    stash = k.state["stash"]["proc_stat"]
    key = f"cpu{cpu}"
    if not online:
        mine = [line for line in lines if line.split(" ", 1)[0] == key]
        if mine:
            stash[str(cpu)] = mine[0]
            k.dirty = True
            k.put("proc/stat", "\n".join(line for line in lines if line not in mine) + "\n")
        return
    line = stash.pop(str(cpu), None)
    if line is None:
        return
    k.dirty = True
    at = 1
    for i, other in enumerate(lines):
        head = other.split(" ", 1)[0]
        if head.startswith("cpu") and head[3:].isdigit() and int(head[3:]) < cpu:
            at = i + 1
    lines.insert(at, line)
    k.put("proc/stat", "\n".join(lines) + "\n")
