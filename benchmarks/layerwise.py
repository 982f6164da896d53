"""How well the layer-wise model predicts group counts k that `governor profile` did not measure.

    python benchmarks/layerwise.py [--reps 30] [--boards jetson-tx2,jetson-nano,jetson-orin-nano] [--skip-sim]

1. This host, real torch on the CPU (one thread), the bundled digits model (resnet-small, G = 4) and a
   G = 8 resnet-small trained for one epoch (latency does not depend on the weights): the median latency
   (ms) of every k is measured; the layer-wise model is fitted on the measured k only (schemes {1, G},
   {1, 2, G} and, for G = 8, {1, 4, 8}) and predicts the held-out k, scored against their measured latency.
2. SIMULATED boards (the same two models through the simulator's physics, every unit and thread count
   that `governor profile --board sim:NAME` measures): the profiler samples with `--groups` = the
   scheme's k only (at most 40 points), `predict_unmeasured` extends the profile to the held-out k, and
   its latency is scored at every OPP combination of the held-out k against the simulator.

MAPE = mean |predicted / measured - 1| (%); worst = the largest of those; within 2 sigma = share of
held-out rows whose error is inside twice the predicted standard deviation. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from governor.core.modelmeta import ModelMeta, read_model_meta
from governor.core.perf.layerwise import predict_levels, predict_unmeasured, shapes_from_levels
from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.core.perf.space import Measurement, ProfilePoint, Space


def _models(workdir: Path) -> list[Path]:
    from governor.runtime.bundled import DEFAULT_CONFIG, ensure_default_model, train_default_model

    g8 = DEFAULT_CONFIG.__class__(**{**DEFAULT_CONFIG.__dict__, "groups": 8, "epochs": 1})
    return [ensure_default_model(workdir), train_default_model(workdir / "resnet-small-g8.dgm", g8)]


def _meta(path: Path) -> ModelMeta:
    with path.open("rb") as handle:
        return read_model_meta(handle)


def _schemes(groups: int) -> list[tuple[int, ...]]:
    return [(1, groups), (1, 2, groups)] + ([(1, groups // 2, groups)] if groups >= 8 else [])


def _score(pred: np.ndarray, std: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    err = np.abs(pred / truth - 1)
    return 100 * float(err.mean()), 100 * float(err.max()), 100 * float(np.mean(np.abs(pred - truth) <= 2 * std))


def host(path: Path, reps: int) -> list[str]:
    import torch

    from governor.runtime.executor import Executor

    torch.set_num_threads(1)
    meta = _meta(path)
    executor = Executor(path, warmup_runs=2)
    batch = np.zeros((1, *meta.input_shape), np.float32)
    ks = range(1, meta.groups + 1)
    for k in ks:  # warm every k
        for _ in range(5):
            executor.run(batch, k, threads=1)
    samples: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(reps):  # interleaved, so drift of the machine hits every k alike
        for k in ks:
            samples[k].append(executor.run(batch, k, threads=1).latency_ms)
    measured = {k: statistics.median(v) for k, v in samples.items()}
    shapes = shapes_from_levels(meta.levels)
    lines = [f"host CPU, {meta.arch} G={meta.groups}: measured ms " +
             ", ".join(f"k={k} {v:.3f}" for k, v in measured.items())]
    for scheme in _schemes(meta.groups):
        held = [k for k in ks if k not in scheme]
        pred = predict_levels(shapes, scheme, [measured[k] for k in scheme], held)
        p = np.array([pred[k][0] for k in held])
        s = np.array([pred[k][1] for k in held])
        t = np.array([measured[k] for k in held])
        mape, worst, cover = _score(p, s, t)
        lines.append(f"  measured k={list(scheme)} -> held-out k={held}: latency MAPE {mape:.1f} %, worst "
                     f"{worst:.1f} %, within 2 sigma {cover:.0f} %")
    return lines


class _SimSource:
    """Measures profile points on a simulated board through its drivers (SIMULATED)."""

    def __init__(self, board: str, meta: ModelMeta) -> None:
        from governor.sim.board import open_sim_board
        from governor.sim.executor import SimExecutor
        from governor.sim.workloads import workload_from_meta

        self.sim = open_sim_board(f"sim:{board}")
        self.drivers = self.sim.open_drivers()
        self.executor = SimExecutor(self.sim, workload_from_meta(meta))

    def measure(self, point: ProfilePoint) -> Measurement:
        from governor.daemon.profiling import parse_mapping

        self.drivers.apply(point.setpoints)
        unit, threads = parse_mapping(point.mapping)
        run = self.executor.run(unit, k=point.groups, threads=threads)
        return Measurement(latency_ms=run.latency_ms, energy_mj=run.energy_mj,
                           power_mw=run.energy_mj / run.latency_ms * 1000.0, simulated=True)


def _subspace(space: Space, keep: np.ndarray) -> Space:
    return Space(space.domains, space.grid[keep], space.mapping_of[keep], space.mappings, space.opp_hz)


def simulated(board: str, path: Path, rng: np.random.Generator, truth_rows: int = 300) -> list[str]:
    from governor.daemon.profiling import board_space
    from governor.drivers.catalogue import load_board

    meta = _meta(path)
    source = _SimSource(board, meta)
    domains_hz = {name: tuple(d.available_hz()) for name, d in source.drivers.domains.items()}
    full = board_space(load_board(board), domains_hz, meta, cpu_count=4)
    lines = []
    for scheme in _schemes(meta.groups):
        seen = np.isin(full.grid[:, -1], scheme)
        sampler = ActiveSampler(_subspace(full, seen), SamplerSettings(max_points=40))
        model = predict_unmeasured(run_sampler(source, sampler), shapes_from_levels(meta.levels),
                                   [k for k in range(1, meta.groups + 1) if k not in scheme])
        held = np.flatnonzero(~seen)
        held = rng.choice(held, size=min(truth_rows, len(held)), replace=False)
        pred, std, truth = [], [], []
        for i in held:
            point = full.point(int(i))
            if point.mapping not in model.predicted:
                continue
            m, s = model.predict("latency_ms", point.mapping, full.grid[i:i + 1])
            pred.append(m[0])
            std.append(s[0])
            truth.append(source.measure(point).latency_ms)
        mape, worst, cover = _score(np.array(pred), np.array(std), np.array(truth))
        lines.append(f"  SIMULATED {board}, {meta.arch} G={meta.groups}, measured k={list(scheme)} "
                     f"({sampler.status().measured} points): held-out k latency over {len(truth)} OPP rows: "
                     f"MAPE {mape:.1f} %, worst {worst:.1f} %, within 2 sigma {cover:.0f} %")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=30, help="timed runs per k on the host")
    parser.add_argument("--boards", default="jetson-tx2,jetson-nano,jetson-orin-nano")
    parser.add_argument("--skip-sim", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        models = _models(Path(tmp))
        print("== 1. this host, real torch on the CPU (1 thread) ==")
        for path in models:
            print("\n".join(host(path, args.reps)))
        if not args.skip_sim:
            print("\n== 2. simulated boards (SIMULATED) ==")
            with threadpool_limits(limits=1):
                for board in args.boards.split(","):
                    for path in models:
                        print("\n".join(simulated(board, path, rng)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
