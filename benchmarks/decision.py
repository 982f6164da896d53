"""Decision time of the optimiser over >= 10,000 operating points (target: p99 <= 50 us).

The table is a TX2-sized grid: 3 units x up to 4 threads x 12 CPU x 13 GPU x 11 EMC x 4 groups,
subsampled to the requested size, with predictions from a smooth roofline-like synthetic model
(the decision cost does not depend on where the numbers come from). Budgets vary per request,
multipliers change every 10 decisions as live load would, and previous-choice hysteresis is on.

Run: python benchmarks/decision.py [--points 12000] [--decisions 20000]
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from governor.core.decision.optimiser import DecisionTable, Demand, Objective, Optimiser
from governor.core.types import OperatingPoint, Setpoints


def build_table(n_points: int, seed: int = 0) -> DecisionTable:
    rng = np.random.default_rng(seed)
    cpu = np.linspace(345.6e6, 2035.2e6, 12)
    gpu = np.linspace(114.75e6, 1300.5e6, 13)
    emc = np.linspace(40.8e6, 1866e6, 11)
    units = [("a57", (1, 2, 3, 4)), ("denver", (1, 2)), ("gpu", (1,))]
    combos = [(u, t, c, g, e, k) for u, ts in units for t in ts
              for c, g, e, k in itertools.product(cpu, gpu, emc, (1, 2, 3, 4))]
    pick = rng.choice(len(combos), size=min(n_points, len(combos)), replace=False)
    points, lat, energy, acc = [], [], [], []
    for i in pick:
        u, t, c, g, e, k = combos[i]
        f = g if u == "gpu" else c
        compute = k * (4.0 if u == "gpu" else 40.0 / t) * 1e9 / f
        memory = k * 2.0 * 1e9 / e
        latency = max(compute, memory) + 0.3 * min(compute, memory) + 0.5
        power = 1500 + 0.4e-6 * c + 0.9e-6 * g * (u == "gpu") + 0.3e-6 * e
        points.append(OperatingPoint(u, t, Setpoints({"cpu": int(c), "gpu": int(g), "emc": int(e)}), k))
        lat.append(latency)
        energy.append(power * latency / 1000)
        acc.append(0.8 + 0.04 * k)
    return DecisionTable(tuple(points), np.array(lat), np.array(energy), np.array(acc))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=12_000)
    ap.add_argument("--decisions", type=int, default=20_000)
    args = ap.parse_args()
    table = build_table(args.points)
    t0 = time.perf_counter()
    opt = Optimiser(table, hysteresis=0.05, switch_ms=2.0)
    opt.candidates()
    precompute_ms = (time.perf_counter() - t0) * 1e3
    rng = np.random.default_rng(1)
    budgets = [Demand(deadline_ms=float(rng.uniform(2, 80)), energy_mj=float(rng.choice([np.nan, 300])) or None,
                      min_accuracy=float(rng.choice([0.0, 0.88])),
                      objective=rng.choice(list(Objective))) for _ in range(256)]
    budgets = [Demand(b.deadline_ms, None if np.isnan(b.energy_mj) else b.energy_mj, b.min_accuracy, b.objective)
               for b in budgets]
    times = np.empty(args.decisions)
    mult = np.ones(len(table.groups))
    prev = None
    for i in range(args.decisions):
        if i % 10 == 0:
            mult = rng.uniform(1.0, 1.5, len(table.groups))
        b = budgets[i % len(budgets)]
        s = time.perf_counter_ns()
        d = opt.decide(b, multiplier=mult, margin=0.05, current_setpoints=0, previous=prev)
        times[i] = (time.perf_counter_ns() - s) / 1e3
        prev = d.index
    p50, p99 = np.percentile(times, [50, 99])
    print(f"operating points: {len(table)}  (Pareto candidates after precompute: {opt.candidates().size})")
    print(f"precompute: {precompute_ms:.1f} ms (once per profile load / clock-cap change)")
    print(f"decisions: {args.decisions}  p50 = {p50:.1f} us  p99 = {p99:.1f} us  (target p99 <= 50 us)")


if __name__ == "__main__":
    main()
