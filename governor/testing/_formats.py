"""How the kernel prints and parses the values in these files (so fakes match byte for byte).

Each helper names the kernel routine whose format it copies. Values are in the file's own unit.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

__all__ = [
    "cpu_ranges",
    "cpufreq_list",
    "devfreq_list",
    "devfreq_trans_stat",
    "dt_string",
    "dt_strings",
    "fixed6",
    "parse_cpu_ranges",
    "parse_uint",
    "snap_down",
    "snap_up",
    "space_list",
]


def cpufreq_list(values: Iterable[object]) -> str:
    """cpufreq's show_available_freqs / available_governors: each item followed by a space."""
    return "".join(f"{v} " for v in values) + "\n"


def devfreq_list(values: Iterable[object]) -> str:
    """devfreq's available_frequencies / available_governors: the trailing space is truncated."""
    return " ".join(str(v) for v in values) + "\n"


def devfreq_trans_stat(table: Sequence[int], cur: int) -> str:
    """devfreq's trans_stat: the transition matrix (all zero here) with ``*`` on the current row."""
    head = "     From  :   To\n           :" + "".join(f"{f:10d}" for f in table) + "   time(ms)\n"
    zeros = "         0" * (len(table) + 1)
    rows = "".join(("*" if f == cur else " ") + f"{f:10d}:" + zeros + "\n" for f in table)
    return head + rows + "Total transition : 0\n"


def space_list(values: Iterable[int]) -> str:
    """cpufreq_show_cpus (related_cpus, affected_cpus): ``"0 1 2 3"``; empty mask prints ``""``."""
    return " ".join(str(v) for v in values) + "\n"


def cpu_ranges(cpus: Iterable[int]) -> str:
    """cpumap ``%*pbl`` (online, present, possible): ``"0-3,5"``; empty prints ``""``."""
    runs: list[list[int]] = []
    for cpu in sorted(set(cpus)):
        if runs and cpu == runs[-1][-1] + 1:
            runs[-1].append(cpu)
        else:
            runs.append([cpu])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs) + "\n"


def parse_cpu_ranges(text: str) -> list[int]:
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    return sorted(cpus)


def fixed6(micro: int) -> str:
    """The Hardkernel INA231 driver's ``"%d.%06d\\n"`` of a micro-unit value (W, A, V)."""
    return f"{micro // 1_000_000}.{micro % 1_000_000:06d}\n"


def dt_string(text: str) -> bytes:
    """A device-tree string property (``model``, ``name``): NUL-terminated, no newline."""
    return text.encode() + b"\0"


def dt_strings(items: Sequence[str]) -> bytes:
    """A device-tree string list (``compatible``): each string NUL-terminated."""
    return b"".join(dt_string(s) for s in items)


def parse_uint(text: str) -> int:
    """sysfs ``kstrtouint``/``sscanf("%u")``: surrounding blanks allowed, anything else is EINVAL."""
    value = int(text.strip(), 10)
    if value < 0:
        raise ValueError(f"{text!r} is negative")
    return value


def snap_up(table: Sequence[int], value: int) -> int:
    """The lowest entry >= value, else the top (cpufreq RELATION_L, devfreq OPP ceil)."""
    i = bisect.bisect_left(table, value)
    return table[min(i, len(table) - 1)]


def snap_down(table: Sequence[int], value: int) -> int:
    """The highest entry <= value, else the bottom (cpufreq RELATION_H, OPP floor)."""
    i = bisect.bisect_right(table, value)
    return table[max(i - 1, 0)]
