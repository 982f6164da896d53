"""Fake kernel behaviour of devfreq nodes, the Jetson EMC overrides, the vendor Mali driver and sensors.

* devfreq: ``min_freq``/``max_freq`` as cpufreq limits (Hz; ``0`` on ``max_freq`` lifts the
  limit); ``governor`` from ``available_governors``; the ``userspace`` governor adds
  ``userspace/set_freq`` (reads ``undefined`` until written) and removes it when replaced.
* bpmp EMC: ``rate`` takes effect only while ``mrq_rate_locked`` is 1 (snapped to the table);
  unlocking hands the clock back (idle: the bottom rate).
* T210 EMC: ``clk_update_rate`` (write-only; reads the state) sets the override rate, snapped; it
  takes effect while ``clk_state``'s enable count is above 0 (each 1 adds one, each 0 takes one).
* vendor Mali: ``dvfs_{min,max}_lock`` in MHz, ``0`` unlocks (reads ``-1``), out-of-table ENOENT,
  locking at the table's own end unlocks; ``clock`` writes pin with DVFS off, ``0`` resumes DVFS.
* INA231 ``enable``: the first conversion publishes an idle reading; disabling zeroes the
  readings (the real driver leaves the last ones; zeroing keeps restores byte-exact).
* nvgpu ``railgate_enable`` = 0 (rail-gated variant): the GPU powers up and registers devfreq.
"""

from __future__ import annotations

import errno
from posixpath import dirname
from typing import Any

from governor.testing._build import domain_dir
from governor.testing._build_dev import build_devfreq_node
from governor.testing._formats import devfreq_trans_stat, fixed6, snap_up
from governor.testing._fs import READ_WRITE
from governor.testing._kernel import KernelIO, limit_pair, parse_uint, reject

__all__ = ["HANDLERS"]


def devfreq_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    table = rule["table"]
    if leaf == "governor":
        _devfreq_governor(k, node, text.strip())
    elif leaf in ("min_freq", "max_freq"):
        value = parse_uint(text)
        if leaf == "max_freq" and value == 0:
            value = table[-1]
        cur = (k.read_int(f"{node}/min_freq"), k.read_int(f"{node}/max_freq"))
        lo, hi = limit_pair(table, rule["limits"], cur, value, is_min=leaf == "min_freq")
        k.put(f"{node}/min_freq", lo)
        k.put(f"{node}/max_freq", hi)
    elif leaf == "userspace/set_freq":
        k.put(f"{node}/userspace/set_freq", parse_uint(text))
    else:
        return False
    _devfreq_recompute(k, table, node)
    return True


def _devfreq_governor(k: KernelIO, node: str, wanted: str) -> None:
    if wanted not in k.read(f"{node}/available_governors").split():
        raise reject(errno.EINVAL, f"governor {wanted!r} is not in available_governors")
    before = k.read(f"{node}/governor")
    k.put(f"{node}/governor", wanted)
    if wanted == "userspace" and before != "userspace":
        k.create(f"{node}/userspace/set_freq", "undefined", READ_WRITE)
    elif before == "userspace" and wanted != "userspace":
        k.remove(f"{node}/userspace")


def _devfreq_recompute(k: KernelIO, table: list[int], node: str) -> None:
    governor = k.read(f"{node}/governor")
    lo, hi = k.read_int(f"{node}/min_freq"), k.read_int(f"{node}/max_freq")
    cur = k.read_int(f"{node}/cur_freq")
    requested = k.read(f"{node}/userspace/set_freq") if k.exists(f"{node}/userspace/set_freq") else ""
    if governor == "performance":
        cur = hi
    elif governor == "userspace":
        wanted = int(requested) if requested.isdigit() else cur
        cur = snap_up(table, min(max(wanted, lo), hi))
    else:
        cur = lo
    k.put(f"{node}/cur_freq", cur)
    k.put(f"{node}/target_freq", cur)
    k.put(f"{node}/trans_stat", devfreq_trans_stat(table, cur))


def emc_bpmp_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    table = rule["table"]
    if leaf == "mrq_rate_locked":
        locked = parse_uint(text) != 0
        k.put(f"{node}/mrq_rate_locked", int(locked))
        if not locked:
            k.put(f"{node}/rate", table[0])
    elif leaf == "rate":
        value = parse_uint(text)
        if k.read(f"{node}/mrq_rate_locked") == "1":
            k.put(f"{node}/rate", snap_up(table, value))
    else:
        return False
    return True


def emc_t210_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    """``clk_update_rate`` is clk_set_rate (kept in the rule: the file reads the state);
    ``clk_state`` counts enables (clk_prepare_enable / clk_disable_unprepare, 0 at 0 stays 0)."""
    table = rule["table"]
    if leaf == "clk_update_rate":
        rule["rate"] = snap_up(table, parse_uint(text))
    elif leaf == "clk_state":
        count = int(rule.get("enables", 0))
        rule["enables"] = count + 1 if parse_uint(text) else max(count - 1, 0)
    else:
        return False
    k.dirty = True
    on = int(rule["enables"] > 0)
    k.put(f"{node}/clk_state", on)
    k.put(f"{node}/clk_update_rate", on)
    effective = rule["rate"] if on else table[0]
    k.put(f"{node}/clk_rate", effective)
    k.put(rule["emc_rate"], effective)
    return True


def mali_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    table = rule["table"]
    if leaf in ("dvfs_min_lock", "dvfs_max_lock"):
        _mali_lock(k, rule, node, leaf == "dvfs_min_lock", text)
    elif leaf == "dvfs":
        if text.strip() in ("0", "1"):
            k.put(f"{node}/dvfs", text.strip())
    elif leaf == "clock":
        mhz = parse_uint(text)
        k.put(f"{node}/dvfs", 0 if mhz else 1)
        if mhz:
            k.put(f"{node}/clock", snap_up(table, mhz))
    else:
        return False
    if k.read(f"{node}/dvfs") == "1":
        lo, hi = k.read_int(f"{node}/dvfs_min_lock"), k.read_int(f"{node}/dvfs_max_lock")
        cur = lo if lo > 0 else table[0]
        k.put(f"{node}/clock", min(cur, hi) if hi > 0 else cur)
    return True


def _mali_lock(k: KernelIO, rule: dict[str, Any], node: str, is_min: bool, text: str) -> None:
    table = rule["table"]
    try:
        mhz = int(text.strip(), 0)
    except ValueError:
        raise reject(errno.ENOENT, f"{text.strip()!r} is not a clock") from None
    if mhz == 0:
        k.put(f"{node}/{'dvfs_min_lock' if is_min else 'dvfs_max_lock'}", -1)
        return
    if not table[0] <= mhz <= table[-1]:
        raise reject(errno.ENOENT, f"{mhz} MHz is outside the DVFS table {table[0]}..{table[-1]}")
    locks = [k.read_int(f"{node}/dvfs_min_lock"), k.read_int(f"{node}/dvfs_max_lock")]
    cur = (locks[0] if locks[0] > 0 else table[0], locks[1] if locks[1] > 0 else table[-1])
    lo, hi = limit_pair(table, rule["limits"], cur, mhz, is_min=is_min)
    k.put(f"{node}/dvfs_min_lock", -1 if lo == table[0] else lo)
    k.put(f"{node}/dvfs_max_lock", -1 if hi == table[-1] else hi)


def ina231_enable_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    try:
        on = int(text.strip() or "0") != 0
    except ValueError:
        on = False  # simple_strtol stops at the first non-digit: 0, i.e. disable
    was = k.read(node) == "1"
    k.put(node, int(on))
    if on != was:
        d = dirname(node)
        for unit, micro in (("W", rule["uw"]), ("A", rule["ua"]), ("V", rule["uv"])):
            k.put(f"{d}/sensor_{unit}", fixed6(micro if on else 0))
            k.put(f"{d}/sensor_max{unit}", fixed6(micro if on else 0))
    return True


def railgate_write(k: KernelIO, rule: dict[str, Any], node: str, leaf: str, text: str) -> bool:
    value = int(parse_uint(text) != 0)  # nvgpu converts to a boolean; the same value is a no-op
    k.put(node, value)
    domain = k.spec.domain(rule["domain"])
    if value == 0 and not k.exists(domain_dir(domain)):
        build_devfreq_node(k.files, k.spec, domain)
        k.put(f"{dirname(node)}/is_railgated", "no")
    return True


HANDLERS = {
    "devfreq": devfreq_write,
    "emc-bpmp": emc_bpmp_write,
    "emc-t210": emc_t210_write,
    "mali-vendor": mali_write,
    "ina231-enable": ina231_enable_write,
    "railgate": railgate_write,
}
