"""Fitting the TX2 power model to the real DVFS grids (``tests/fixtures/tx2/tx2-power-grid-*.csv``).

Theory of operation
-------------------
Each grid row is one (CPU, GPU, EMC) setting with a benchmark running and the median of every
rail. The rails are fitted one by one with the forms of :mod:`governor.core.physics`, evaluated
here in vectorised numpy so that least squares takes seconds; :func:`rail_models` turns the fitted
numbers into the :class:`~governor.core.physics.RailModel` values the simulator runs, and a test
checks that both evaluations agree. Residuals are relative, so MAPE is what gets minimised.

What the fit assumes (each stated in docs/simulator.md):

* The benchmarks ran on the four A57 cores (the tegrastats logs show the Denver pair idle at
  345.6 MHz), so A57 busy cores = mean CPU load over six cores x 6, capped at 4.
* No voltage table is public for the TX2 (BPMP picks voltages per chip and temperature), so each
  rail's voltage is a knee curve: flat at ``v_lo`` up to a fitted knee, then linear to ``v_hi`` at
  the top OPP. CPU 0.80-1.10 V and GPU 0.70-1.05 V are fixed guesses; the EMC rails fit ``v_hi``.
* A core stalled on DRAM switches less: stall = r f_cpu / (r f_cpu + f_emc) with one memory ratio
  r per benchmark (a workload property; the simulator's own jobs get stall from their roofline).
* VDD_IN = base + gain x (sum of the four monitored rails): regulator loss and unmonitored rails.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from governor.core.physics import PowerTerm, RailModel, VoltageCurve

__all__ = [
    "RAILS",
    "Grid",
    "Tx2Fit",
    "fit_tx2",
    "mape",
    "predict_rails",
    "rail_models",
    "read_grid",
]

RAILS = ("VDD_SYS_CPU", "VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_SYS_DDR")
_COLUMN = {"VDD_IN": "vdd_in_mw", "VDD_SYS_CPU": "vdd_sys_cpu_mw", "VDD_SYS_GPU": "vdd_sys_gpu_mw",
           "VDD_SYS_SOC": "vdd_sys_soc_mw", "VDD_SYS_DDR": "vdd_sys_ddr_mw"}
CPU_TOP_HZ, GPU_TOP_HZ, EMC_TOP_HZ = 2_035_200_000.0, 1_300_500_000.0, 1_866_000_000.0
DENVER_IDLE_HZ = 345_600_000.0
A57_CORES, DENVER_CORES, GRID_CPUS = 4, 2, 6
# Priors where the grids cannot tell (they never load the GPU, and DRAM is busiest only at low clocks):
# a TX2 GPU at full load and the top OPP draws ~4 W on VDD_SYS_GPU (public tegrastats reports of CUDA
# inference at MAXN), and LPDDR4 plus PHY spend at most ~8 pJ per bit moved (59.7 GB/s at the top).
GPU_C_ACTIVE_PF = 4000.0 / (1.05**2 * GPU_TOP_HZ / 1e9)
DDR_C_ACTIVE_MAX_PF = 8e-12 * 8 * 32 / 1.4**2 * 1e12


@dataclass(frozen=True)
class Grid:
    """One benchmark's grid as arrays: clocks in Hz, loads as fractions, rails in mW."""

    bench: str
    cpu_hz: np.ndarray
    gpu_hz: np.ndarray
    emc_hz: np.ndarray
    cpu_util: np.ndarray
    gpu_util: np.ndarray
    emc_util: np.ndarray
    mw: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.cpu_hz)

    @property
    def a57_busy_cores(self) -> np.ndarray:
        return np.asarray(np.minimum(self.cpu_util * GRID_CPUS, A57_CORES), dtype=float)


def read_grid(path: str | Path, bench: str = "") -> Grid:
    """Read one ``tx2-power-grid-*.csv``; ``bench`` defaults to the name after ``grid-``."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows")
    missing = {"cpu_khz", "gpu_hz", "emc_hz", *_COLUMN.values()} - set(rows[0])
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}; is this a tx2-power-grid CSV?")

    def col(name: str, scale: float = 1.0) -> np.ndarray:
        return np.array([float(r[name]) * scale for r in rows])

    return Grid(
        bench=bench or path.stem.rsplit("grid-", 1)[-1],
        cpu_hz=col("cpu_khz", 1e3), gpu_hz=col("gpu_hz"), emc_hz=col("emc_hz"),
        cpu_util=col("cpu_util_pct", 0.01), gpu_util=col("gpu_util_pct", 0.01), emc_util=col("emc_util_pct", 0.01),
        mw={rail: col(column) for rail, column in _COLUMN.items()},
    )


def _knee(f: np.ndarray, v_lo: float, v_hi: float, knee_hz: float, top_hz: float) -> np.ndarray:
    return np.asarray(v_lo + (v_hi - v_lo) * np.clip((f - knee_hz) / (top_hz - knee_hz), 0.0, 1.0), dtype=float)


def _term(v: np.ndarray, f: np.ndarray, leak: float, c_clock: float, n_on: float, c_active: float,
          act: np.ndarray) -> np.ndarray:
    return np.asarray(leak * v + v * v * (f / 1e9) * (c_clock * n_on + c_active * act), dtype=float)


def _stall(ratio: float, unit_hz: np.ndarray, emc_hz: np.ndarray) -> np.ndarray:
    return np.asarray(ratio * unit_hz / (ratio * unit_hz + emc_hz), dtype=float)


# Each rail: (parameter names, initial values, lower bounds, upper bounds, model).
_Model = Callable[[Mapping[str, float], Grid], np.ndarray]


def _cpu(p: Mapping[str, float], g: Grid) -> np.ndarray:
    v = _knee(g.cpu_hz, 0.80, 1.10, p["knee_hz"], CPU_TOP_HZ)
    stall = _stall(p[f"ratio_{g.bench}"], g.cpu_hz, g.emc_hz)
    act = g.a57_busy_cores * (1.0 - p["stall_saving"] * stall)
    v_idle = np.full_like(v, 0.80)
    denver = _term(v_idle, np.full_like(v, DENVER_IDLE_HZ), p["leak"], p["c_clock"], DENVER_CORES, 0.0, 0 * v)
    a57 = _term(v, g.cpu_hz, p["leak"], p["c_clock"], A57_CORES, p["c_active"], act)
    return np.asarray(p["static"] + a57 + denver, dtype=float)


def _gpu(p: Mapping[str, float], g: Grid) -> np.ndarray:
    v = _knee(g.gpu_hz, 0.70, 1.05, p["knee_hz"], GPU_TOP_HZ)
    act = g.gpu_util * (1.0 - p["stall_saving"] * _stall(p["ratio_display"], g.gpu_hz, g.emc_hz))
    return p["static"] + _term(v, g.gpu_hz, p["leak"], p["c_clock"], 1, p["c_active"], act)


def _emc(p: Mapping[str, float], g: Grid) -> np.ndarray:
    v = _knee(g.emc_hz, 0.80, p["v_hi"], p["knee_hz"], EMC_TOP_HZ)
    return p["static"] + _term(v, g.emc_hz, p["leak"], p["c_clock"], 1, p["c_active"], g.emc_util)


_SPECS: Mapping[str, tuple[_Model, dict[str, tuple[float, float, float]]]] = {
    "VDD_SYS_CPU": (_cpu, {"static": (100, 0, 3000), "leak": (50, 0, 3000), "c_clock": (5, 0, 2000),
                           "c_active": (300, 0, 5000), "stall_saving": (0.5, 0, 1), "knee_hz": (0.8e9, 0.35e9, 1.9e9),
                           "ratio_cpubench": (0.1, 0, 20), "ratio_membench": (0.5, 0, 20)}),
    "VDD_SYS_GPU": (_gpu, {"static": (50, 0, 2000), "leak": (50, 0, 2000), "c_clock": (5, 0, 5000),
                           "c_active": (GPU_C_ACTIVE_PF,) * 3, "knee_hz": (0.8e9, 0.12e9, 1.25e9),
                           "stall_saving": (0.5, 0, 0.95), "ratio_display": (1.0, 0, 50)}),
    "VDD_SYS_SOC": (_emc, {"static": (300, 0, 3000), "leak": (10, 0, 3000), "c_clock": (100, 0, 20000),
                           "c_active": (100, 0, 20000), "knee_hz": (1.0e9, 0.05e9, 1.8e9), "v_hi": (1.2, 0.81, 3.0)}),
    "VDD_SYS_DDR": (_emc, {"static": (100, 0, 3000), "leak": (10, 0, 3000), "c_clock": (100, 0, 20000),
                           "c_active": (100, 0, DDR_C_ACTIVE_MAX_PF), "knee_hz": (1.0e9, 0.05e9, 1.8e9),
                           "v_hi": (1.2, 0.81, 3.0)}),
}


@dataclass(frozen=True)
class Tx2Fit:
    """Fitted coefficients: per rail a name -> value dict, plus VDD_IN = base + gain x sum(rails)."""

    rails: Mapping[str, Mapping[str, float]]
    input_base_mw: float
    input_gain: float

    def to_json(self) -> dict[str, Any]:
        return {"rails": {k: dict(v) for k, v in self.rails.items()},
                "input_base_mw": self.input_base_mw, "input_gain": self.input_gain}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tx2Fit:
        rails = {str(k): {str(n): float(x) for n, x in v.items()} for k, v in data["rails"].items()}
        return cls(rails, float(data["input_base_mw"]), float(data["input_gain"]))


def _fit_rail(rail: str, grids: Sequence[Grid]) -> dict[str, float]:
    from scipy.optimize import least_squares  # only the calibration needs scipy

    model, params = _SPECS[rail]
    fixed = {n: spec[0] for n, spec in params.items() if len(spec) == 3 and spec[1] == spec[2]}
    names = [n for n in params if n not in fixed]
    x0, lo, hi = (np.array([params[n][i] for n in names], dtype=float) for i in range(3))
    measured = np.concatenate([g.mw[rail] for g in grids])
    scale = np.where(np.abs(x0) > 0, np.abs(x0), 1.0)

    def values(x: np.ndarray) -> dict[str, float]:
        return {**fixed, **dict(zip(names, (float(v) for v in x * scale), strict=True))}

    def residual(x: np.ndarray) -> np.ndarray:
        return np.asarray(np.concatenate([model(values(x), g) for g in grids]) / measured - 1.0)

    result = least_squares(residual, x0 / scale, bounds=(lo / scale, hi / scale), x_scale="jac")
    return values(result.x)


def predict_rails(fit: Tx2Fit, grid: Grid) -> dict[str, np.ndarray]:
    """Model rails (and VDD_IN) in mW for every row of ``grid``."""
    out = {rail: _SPECS[rail][0](fit.rails[rail], grid) for rail in RAILS}
    out["VDD_IN"] = fit.input_base_mw + fit.input_gain * np.sum([out[r] for r in RAILS], axis=0)
    return out


def fit_tx2(grids: Sequence[Grid]) -> Tx2Fit:
    """Fit every rail, then the input rail on the fitted rails (what the simulator will add up)."""
    rails = {rail: _fit_rail(rail, grids) for rail in RAILS}
    partial = Tx2Fit(rails, 0.0, 1.0)
    summed = np.concatenate([sum(predict_rails(partial, g)[r] for r in RAILS) for g in grids])
    measured = np.concatenate([g.mw["VDD_IN"] for g in grids])
    design = np.column_stack([np.ones_like(summed), summed]) / measured[:, None]
    (base, gain), *_ = np.linalg.lstsq(design, np.ones_like(measured), rcond=None)
    return Tx2Fit(rails, float(base), float(gain))


def mape(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Mean absolute percentage error, %."""
    return float(np.mean(np.abs(np.asarray(predicted) - measured) / measured) * 100.0)


def _curve(table_hz: Sequence[float], v_lo: float, v_hi: float, knee_hz: float, top_hz: float) -> VoltageCurve:
    f = np.asarray(table_hz, dtype=float)
    return VoltageCurve(tuple(float(x) for x in f), tuple(float(v) for v in _knee(f, v_lo, v_hi, knee_hz, top_hz)))


def rail_models(fit: Tx2Fit, tables: Mapping[str, Sequence[float]]) -> tuple[RailModel, ...]:
    """The simulator's rails from a fit; ``tables`` maps domain name -> its OPP table in Hz."""
    c, g, s, d = (fit.rails[r] for r in RAILS)
    cpu_terms = tuple(
        PowerTerm(dom, _curve(tables[dom], 0.80, 1.10, c["knee_hz"], CPU_TOP_HZ), c["leak"], c["c_clock"],
                  c["c_active"], c["stall_saving"])
        for dom in ("cpu-a57", "cpu-denver")
    )
    gpu = PowerTerm("gpu", _curve(tables["gpu"], 0.70, 1.05, g["knee_hz"], GPU_TOP_HZ), g["leak"], g["c_clock"],
                    g["c_active"], g["stall_saving"])

    def emc(p: Mapping[str, float]) -> PowerTerm:
        curve = _curve(tables["emc"], 0.80, p["v_hi"], p["knee_hz"], EMC_TOP_HZ)
        return PowerTerm("emc", curve, p["leak"], p["c_clock"], p["c_active"])

    return (
        RailModel("VDD_SYS_CPU", c["static"], cpu_terms),
        RailModel("VDD_SYS_GPU", g["static"], (gpu,)),
        RailModel("VDD_SYS_SOC", s["static"], (emc(s),)),
        RailModel("VDD_SYS_DDR", d["static"], (emc(d),)),
    )


def bench_ratio(fit: Tx2Fit, bench: str) -> float:
    """The fitted memory ratio r of a calibration benchmark (stall = r f / (r f + f_emc))."""
    value = fit.rails["VDD_SYS_CPU"].get(f"ratio_{bench}")
    if value is None or math.isnan(value):
        raise KeyError(f"no memory ratio fitted for benchmark {bench!r}")
    return value
