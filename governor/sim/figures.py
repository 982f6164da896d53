"""Public figures behind the simulated boards other than the calibrated TX2 (cited in docs/simulator.md).

Each board gets a handful of numbers that public material states or implies: the power modes
NVIDIA sells (Nano 5/10 W, Xavier NX 10/15/20 W, Orin Nano 7/15 W, AGX Orin 15/30/50/60 W), the
Odroid XU3 rail magnitudes reported with its INA231 sensors, memory bus widths and data rates,
core counts and SIMD widths. :mod:`governor.sim.boards` turns them into capacitances (C = P /
(V^2 f)) so that a full load at the top OPP draws the stated power. They are approximations, not
measurements: everything the simulator derives from them is labelled simulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["CORE_PERF", "FIGURES", "BoardFigures", "core_perf", "figures_for"]


@dataclass(frozen=True)
class BoardFigures:
    """Power in mW at the top OPP, full load; thermal in °C/W and s; DRAM in bytes per EMC Hz."""

    core_full_mw: dict[str, float]  # per core, by core-name key of CORE_PERF
    gpu_full_mw: float
    emc_full_mw: float  # DRAM + controller at full bandwidth
    emc_idle_mw: float  # clocked at the top OPP with no traffic
    soc_static_mw: float
    idle_input_mw: float  # whole board idle, at the input rail (or sum of rails)
    bytes_per_hz: float  # peak DRAM bytes per EMC clock (bus width x data rate / clock)
    fixed_emc_hz: float  # EMC clock used when the board has no EMC domain
    r_package: float  # heatsink: package rise per W, °C/W
    tau_package_s: float
    r_local: float = 1.5  # hot spot above the package per W of the zone's own unit
    tau_local_s: float = 3.0
    ambient_c: float = 25.0
    input_gain: float = 1.15  # input rail = base + gain x rails (regulators ~87 % efficient)
    fan_on_c: float | None = None  # a fan starts at this package temperature (None: passive heatsink)
    r_fan: float = 0.0  # °C/W with the fan running
    sources: tuple[str, ...] = field(default=())


# SIMD MACs per cycle per core (fp32 FMA lanes), kernel efficiency, parallel fraction.
CORE_PERF: dict[str, tuple[float, float, float]] = {
    "A78": (8.0, 0.25, 0.93),  # Cortex-A78AE: 2 x 128-bit NEON
    "Carmel": (8.0, 0.22, 0.93),  # 2 x 128-bit NEON
    "A57": (4.0, 0.25, 0.92),  # 2 x 64-bit FP/NEON pipes
    "Denver": (4.0, 0.28, 0.92),
    "A15": (4.0, 0.22, 0.92),
    "A7": (1.0, 0.30, 0.92),  # in-order, one 64-bit NEON pipe used every other cycle
    "x86": (16.0, 0.30, 0.95),  # AVX2: 2 x 8-lane FMA
}


def core_perf(core: str) -> tuple[str, tuple[float, float, float]]:
    """The CORE_PERF entry whose key the catalogue's core name contains (A78 before A7)."""
    for key in sorted(CORE_PERF, key=len, reverse=True):
        if key.lower() in core.lower():
            return key, CORE_PERF[key]
    return "x86", CORE_PERF["x86"]


_JETSON_SRC = "NVIDIA Jetson module data sheets and nvpmodel power-mode tables (boards.md §3)"

FIGURES: dict[str, BoardFigures] = {
    "jetson-nano": BoardFigures(
        core_full_mw={"A57": 600.0}, gpu_full_mw=3000.0, emc_full_mw=900.0, emc_idle_mw=350.0, soc_static_mw=300.0,
        idle_input_mw=1250.0, bytes_per_hz=16.0, fixed_emc_hz=1.6e9, r_package=5.0, tau_package_s=180.0,
        sources=(_JETSON_SRC, "Nano: 10 W (MAXN) and 5 W modes; 64-bit LPDDR4 25.6 GB/s; idle ~1.25 W at 5 V"),
    ),
    "jetson-tx2": BoardFigures(  # power comes from the calibration; these fill the rest
        core_full_mw={"A57": 760.0, "Denver": 900.0}, gpu_full_mw=4000.0, emc_full_mw=3000.0, emc_idle_mw=800.0,
        soc_static_mw=370.0, idle_input_mw=1800.0, bytes_per_hz=32.0, fixed_emc_hz=1.866e9, r_package=8.0,
        tau_package_s=90.0, fan_on_c=50.0, r_fan=3.0,
        sources=(_JETSON_SRC, "TX2: 7.5 W (Max-Q) / 15 W (Max-N); 128-bit LPDDR4 59.7 GB/s"),
    ),
    "jetson-xavier-nx": BoardFigures(
        core_full_mw={"Carmel": 900.0}, gpu_full_mw=5000.0, emc_full_mw=1500.0, emc_idle_mw=500.0, soc_static_mw=600.0,
        idle_input_mw=2400.0, bytes_per_hz=32.0, fixed_emc_hz=1.866e9, r_package=6.0, tau_package_s=120.0,
        fan_on_c=50.0, r_fan=2.6,
        sources=(_JETSON_SRC, "Xavier NX: 10/15/20 W modes; 128-bit LPDDR4x 51.2-59.7 GB/s"),
    ),
    "jetson-orin-nano": BoardFigures(
        core_full_mw={"A78": 500.0}, gpu_full_mw=4500.0, emc_full_mw=1500.0, emc_idle_mw=500.0, soc_static_mw=700.0,
        idle_input_mw=3000.0, bytes_per_hz=32.0, fixed_emc_hz=2.133e9, r_package=6.0, tau_package_s=120.0,
        fan_on_c=50.0, r_fan=2.4,
        sources=(_JETSON_SRC, "Orin Nano 8GB: 7 W and 15 W modes; 128-bit LPDDR5 68 GB/s"),
    ),
    "jetson-agx-orin": BoardFigures(
        core_full_mw={"A78": 900.0}, gpu_full_mw=25000.0, emc_full_mw=5000.0, emc_idle_mw=1500.0,
        soc_static_mw=2000.0, idle_input_mw=7000.0, bytes_per_hz=64.0, fixed_emc_hz=3.199e9, r_package=3.0, r_local=0.5,
        tau_package_s=200.0, fan_on_c=50.0, r_fan=0.9,
        sources=(_JETSON_SRC, "AGX Orin 64GB: 15/30/50 W and MAXN (~60 W); 256-bit LPDDR5 204.8 GB/s"),
    ),
    "odroid-xu3": BoardFigures(
        core_full_mw={"A15": 1300.0, "A7": 150.0}, gpu_full_mw=2000.0, emc_full_mw=600.0, emc_idle_mw=150.0,
        soc_static_mw=150.0, idle_input_mw=2000.0, bytes_per_hz=16.0, fixed_emc_hz=933e6, r_package=8.0,
        tau_package_s=40.0, fan_on_c=57.0, r_fan=4.5,
        sources=("Hardkernel XU3 INA231 rails (boards.md §4.1): A15 cluster ~5-6 W at 2 GHz all cores busy, "
                 "A7 cluster ~0.5-0.7 W at 1.4 GHz, Mali-T628 ~2 W at 600 MHz, memory ~0.3-0.6 W",
                 "Exynos 5422: 2 x 32-bit LPDDR3 at 933 MHz, 14.9 GB/s"),
    ),
    "odroid-xu4": BoardFigures(
        core_full_mw={"A15": 1300.0, "A7": 150.0}, gpu_full_mw=2000.0, emc_full_mw=600.0, emc_idle_mw=150.0,
        soc_static_mw=150.0, idle_input_mw=2500.0, bytes_per_hz=16.0, fixed_emc_hz=933e6, r_package=8.0,
        tau_package_s=40.0, fan_on_c=57.0, r_fan=3.5,
        sources=("same Exynos 5422 as the XU3 (no on-board sensors); active fan heatsink",),
    ),
    "host": BoardFigures(
        core_full_mw={"x86": 4000.0}, gpu_full_mw=0.0, emc_full_mw=3000.0, emc_idle_mw=1000.0, soc_static_mw=5000.0,
        idle_input_mw=15000.0, bytes_per_hz=16.0, fixed_emc_hz=3.2e9, r_package=0.4, tau_package_s=60.0,
        sources=("a generic desktop: ~4 W per busy core, dual-channel DDR4-3200 51.2 GB/s",),
    ),
}


def figures_for(board: str, family: str) -> BoardFigures:
    """The figures of ``board``; an unknown board borrows its family's (a new catalogue entry still runs)."""
    if board in FIGURES:
        return FIGURES[board]
    return FIGURES[{"jetson": "jetson-nano", "odroid": "odroid-xu3"}.get(family, "host")]
