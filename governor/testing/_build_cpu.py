"""CPUs: the online/present lists, hotplug files, cpufreq policies and ``/proc/stat``.

A policy's directory is where its kernel keeps it: ``cpufreq/policyN`` from Linux 4.3 on, the
first CPU's ``cpuN/cpufreq`` before that (Hardkernel 3.10); the other CPUs of the cluster get a
``cpuK/cpufreq`` symlink to it. A generic host (``discover_cpufreq``) gets a synthetic layout: one
acpi-cpufreq policy per CPU with a made-up 800..3200 MHz table, labelled as such in docs/boards.md.
The idle state is what an idle board shows: dynamic governors at the bottom of the table
(``performance`` at the top), limits wide open.
"""

from __future__ import annotations

from dataclasses import dataclass

from governor.core.board import BoardSpec
from governor.testing._build import BuildContext, domain_dir, write_all
from governor.testing._formats import cpu_ranges, cpufreq_list, space_list
from governor.testing._fs import ROOT_ONLY

__all__ = ["CPU_DIR", "CpufreqPolicy", "build_cpus", "policies"]

CPU_DIR = "sys/devices/system/cpu"
HOST_CPUS = 4
HOST_TABLE_KHZ = (800000, 1200000, 1600000, 2000000, 2400000, 2800000, 3200000)
DEFAULT_GOVERNORS = ("conservative", "ondemand", "userspace", "powersave", "performance", "schedutil")
_LATENCY_NS = {"jetson": 500000, "odroid": 140000, "host": 10000}
_DRIVER = {"jetson": "tegra_cpufreq", "odroid": "cpufreq-dt", "host": "acpi-cpufreq"}


@dataclass(frozen=True)
class CpufreqPolicy:
    dir: str
    cpus: tuple[int, ...]
    table: tuple[int, ...]
    governors: tuple[str, ...]
    governor: str
    driver: str

    @property
    def idle_khz(self) -> int:
        return self.table[-1] if self.governor == "performance" else self.table[0]


def policies(spec: BoardSpec) -> list[CpufreqPolicy]:
    family = spec.board.family
    if spec.discover_cpufreq:
        n = spec.cpu_count or HOST_CPUS
        return [
            CpufreqPolicy(
                f"{CPU_DIR}/cpufreq/policy{k}", (k,), HOST_TABLE_KHZ, DEFAULT_GOVERNORS, "schedutil", _DRIVER[family]
            )
            for k in range(n)
        ]
    out = []
    for domain in (d for d in spec.domains if d.driver == "cpufreq"):
        cpus = tuple(sorted({c for u in spec.units if u.domain == domain.name for c in u.cpus}))
        if not cpus:
            raise ValueError(f"cpufreq domain {domain.name!r}: no compute unit lists its cpus")
        governors = domain.governors or DEFAULT_GOVERNORS
        governor = domain.default_governor or ("schedutil" if "schedutil" in governors else governors[0])
        driver = domain.kernel_driver or _DRIVER[family]
        out.append(CpufreqPolicy(domain_dir(domain), cpus, domain.table, governors, governor, driver))
    return out


def _cpu_count(spec: BoardSpec, pols: list[CpufreqPolicy]) -> int:
    listed = [c for u in spec.units for c in u.cpus] + [c for p in pols for c in p.cpus] + list(spec.hotplug_cpus)
    return spec.cpu_count or (max(listed) + 1 if listed else HOST_CPUS)


def build_cpus(ctx: BuildContext) -> None:
    pols = policies(ctx.spec)
    n = _cpu_count(ctx.spec, pols)
    every = range(n)
    summary = {"possible": cpu_ranges(every), "present": cpu_ranges(every), "online": cpu_ranges(every)}
    write_all(ctx.files, CPU_DIR, {**summary, "offline": "\n", "kernel_max": f"{n - 1}\n"})
    owner = {c: p for p in pols for c in p.cpus}
    for k in every:
        ctx.files.abs(f"{CPU_DIR}/cpu{k}").mkdir(parents=True, exist_ok=True)
        if k in ctx.spec.hotplug_cpus:
            _hotplug_file(ctx, k, owner.get(k))
    for policy in pols:
        _build_policy(ctx, policy)
    _build_proc_stat(ctx, n)


def _hotplug_file(ctx: BuildContext, cpu: int, policy: CpufreqPolicy | None) -> None:
    rel = f"{CPU_DIR}/cpu{cpu}/online"
    write_all(ctx.files, f"{CPU_DIR}/cpu{cpu}", {}, {"online": 1})
    own_dir = f"{CPU_DIR}/cpu{cpu}/cpufreq"
    # Before Linux 4.3 a CPU's cpufreq symlink disappears while it is offline.
    old_layout = policy is not None and "/cpufreq/policy" not in policy.dir and policy.dir != own_dir
    ctx.rule_file(
        rel,
        kind="cpu-online",
        cpu=cpu,
        policy=policy.dir if policy else "",
        link=own_dir if old_layout else "",
        cpus=list(policy.cpus) if policy else [],
    )


def _build_policy(ctx: BuildContext, p: CpufreqPolicy) -> None:
    latency = _LATENCY_NS[ctx.spec.board.family]
    ro: dict[str, object] = {
        "affected_cpus": space_list(p.cpus),
        "related_cpus": space_list(p.cpus),
        "cpuinfo_min_freq": p.table[0],
        "cpuinfo_max_freq": p.table[-1],
        "cpuinfo_transition_latency": latency,
        "scaling_available_governors": cpufreq_list(p.governors),
        "scaling_cur_freq": p.idle_khz,
        "scaling_driver": p.driver,
        "stats/time_in_state": "".join(f"{f} 0\n" for f in p.table),
        "stats/total_trans": 0,
    }
    if ctx.variant != "no-table":
        ro["scaling_available_frequencies"] = cpufreq_list(p.table)
    rw = {
        "scaling_governor": p.governor,
        "scaling_min_freq": p.table[0],
        "scaling_max_freq": p.table[-1],
        "scaling_setspeed": p.idle_khz if p.governor == "userspace" else "<unsupported>",
    }
    write_all(ctx.files, p.dir, ro, rw)
    ctx.files.write(f"{p.dir}/cpuinfo_cur_freq", f"{p.idle_khz}\n", ROOT_ONLY, atomic=False)
    for cpu in p.cpus:
        link = f"{CPU_DIR}/cpu{cpu}/cpufreq"
        if link != p.dir:
            ctx.files.link(link, p.dir)
    ctx.rule_dir(p.dir, kind="cpufreq", table=list(p.table), limits=ctx.spec.board.limit_writes)


def _build_proc_stat(ctx: BuildContext, n: int) -> None:
    """``/proc/stat`` with one line per online CPU (user nice system idle iowait irq softirq steal ...)."""
    rows = []
    for _ in range(n):
        user, system = ctx.rng.randint(20_000, 60_000), ctx.rng.randint(5_000, 20_000)
        idle, iowait = ctx.rng.randint(400_000, 900_000), ctx.rng.randint(100, 3_000)
        rows.append([user, ctx.rng.randint(0, 500), system, idle, iowait, 0, ctx.rng.randint(50, 900), 0, 0, 0])
    total = [sum(col) for col in zip(*rows, strict=True)]
    lines = ["cpu  " + " ".join(map(str, total))]
    lines += [f"cpu{k} " + " ".join(map(str, row)) for k, row in enumerate(rows)]
    lines += [
        f"intr {ctx.rng.randint(10**6, 10**7)} 0 0 0",
        f"ctxt {ctx.rng.randint(10**6, 10**8)}",
        "btime 1700000000",
        f"processes {ctx.rng.randint(2_000, 20_000)}",
        "procs_running 1",
        "procs_blocked 0",
        f"softirq {total[6]} 0 0 0 0 0 0 0 0 0 0",
    ]
    ctx.files.write("proc/stat", "\n".join(lines) + "\n", atomic=False)
