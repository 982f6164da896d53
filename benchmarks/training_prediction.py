"""How well does a training profile of a few points predict the rest, on this machine?

Measures real training steps (forward, loss, backward, SGD step) of alexnet-cifar (G=4) at every
k in 1..4 and batch sizes 2..128, and of resnet-small (G=4). The predictors are fitted to alexnet
points with k in {1, 2, 4} and batch in {2, 8, 32, 128} only; the benchmark prints the accuracy
(1 - mean relative error, perf4sight's figure) on the held-back alexnet points (every k=3 point and
batches 4, 16, 64) and on every resnet-small point (an architecture never profiled).

    python benchmarks/training_prediction.py                 # measure (about 4 minutes on 2 cores)
    python benchmarks/training_prediction.py --save DIR      # ... and keep the two profiles
    python benchmarks/training_prediction.py --load DIR      # re-fit saved profiles, no measuring

Targets (issue 19, above perf4sight's Jetson TX2 figures of 95 % and 91 %): memory >= 96 %, latency
>= 93 % on held-back points, and two runs within 2 points of each other.
Memory is the peak resident-set increment over an idle torch worker; latency the median step time,
both wall clock and the step's CPU time. Steps run on ONE torch thread by default: on a shared
2-core host, two OpenMP threads wait for each other at every barrier whenever another process holds
a core, which stretched steps up to 10x; one thread is merely slowed by the CPU share it loses, and
its CPU time not at all. ``--threads 2`` measures the default two-thread configuration instead.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from governor.core.training.cost import (
    Method,
    TrainingCostModel,
    TrainingProfile,
    TrainingRow,
    TrainingSample,
    parse_training_profile,
    samples_from_profile,
)

ARCHS = ("alexnet-cifar", "resnet-small")
GROUPS = 4
BATCHES = {"alexnet-cifar": (2, 4, 8, 16, 32, 64, 128), "resnet-small": (2, 8, 32, 128)}
TRAIN_K, TRAIN_BATCHES = (1, 2, 4), (2, 8, 32, 128)
TARGETS = {"memory": 0.96, "latency": 0.93}
CALIBRATION = {(1, 8), (4, 32)}  # (k, batch) of the unprofiled architecture added in the third question


def measure(arch: str, threads: int, passes: int) -> TrainingProfile:
    from governor.runtime.training_profile import StepOptions, dynamic_net_factories, profile_training

    started = time.monotonic()

    def progress(row: TrainingRow, n: int) -> None:
        state = f"{row.memory_mb:7.1f} MB {row.latency_ms:8.1f} ms" if row.passed else f"FAILED {row.reason}"
        print(f"  {arch} k={row.groups} batch={row.batch:<4} {state}  contention {100 * (row.contention or 0):3.0f}%"
              f"  [{time.monotonic() - started:5.0f} s]", file=sys.stderr, flush=True)

    # One thread pinned to the last CPU: no migrations; the scheduler moves other work to the rest.
    cpus = (max(os.sched_getaffinity(0)),) if threads == 1 else None
    # Several passes (each point sampled at different moments) beat retries at the same moment.
    options = StepOptions(warmup=1, repeats=3, min_seconds=0.4, threads=threads, cpus=cpus, memory_cap_mb=4000.0,
                          retries=0)
    return profile_training(dynamic_net_factories(arch, GROUPS), (3, 32, 32), BATCHES[arch], options,
                            passes=passes, model_name=f"{arch}:{GROUPS}", on_row=progress)


# Every split of the same shape as the protocol's (one interior k and the batches between others held
# back): the self-estimate's coverage pooled over them rests on 58 errors per target instead of 16, on
# which only 15 inside (94 %) reads as the 90-98 % goal and 16 inside is what a calibrated sd gives half
# the time.
SPLITS = tuple((k, batches) for k in (3, 2) for batches in (TRAIN_BATCHES, (2, 4, 16, 64, 128)))


def _held_back(row: TrainingRow, split: tuple[int, tuple[int, ...]] = (3, TRAIN_BATCHES)) -> bool:
    held_k, batches = split
    return row.groups == held_k or row.batch not in batches


def _samples(profile: TrainingProfile, clock: str, held: bool | None = None,
             split: tuple[int, tuple[int, ...]] = (3, TRAIN_BATCHES)) -> list[TrainingSample]:
    rows = [r for r in profile.rows if held is None or _held_back(r, split) == held]
    return samples_from_profile(profile.model_copy(update={"rows": tuple(rows)}), clock=clock)  # type: ignore[arg-type]


def accuracy(model: TrainingCostModel, samples: list[TrainingSample]) -> dict[str, float]:
    predictions = model.predict_many([(s.network, s.batch) for s in samples])
    memory = [abs(p.memory_mb - s.memory_mb) / s.memory_mb for p, s in zip(predictions, samples, strict=True)]
    latency = [abs(p.latency_ms - s.latency_ms) / s.latency_ms for p, s in zip(predictions, samples, strict=True)]
    inside = sum(p.inside for p in predictions)
    # The self-estimate's honesty (issue 19.4): the share of real errors inside the predicted 2 sigma.
    mem_cover = np.mean([abs(p.memory_mb - s.memory_mb) <= 2 * p.memory_sd_mb
                         for p, s in zip(predictions, samples, strict=True)])
    lat_cover = np.mean([abs(p.latency_ms - s.latency_ms) <= 2 * p.latency_sd_ms
                         for p, s in zip(predictions, samples, strict=True)])
    # ... and its scale: the rms of error / sd is 1 for a calibrated sd, below 1 for a cautious one (on 16
    # points 100 % inside 2 sd is what a calibrated sd gives 47 % of the time: the coverage alone says little)
    mem_z = np.sqrt(np.mean([((p.memory_mb - s.memory_mb) / p.memory_sd_mb) ** 2
                             for p, s in zip(predictions, samples, strict=True)]))
    lat_z = np.sqrt(np.mean([((p.latency_ms - s.latency_ms) / p.latency_sd_ms) ** 2
                             for p, s in zip(predictions, samples, strict=True)]))
    return {"memory": 1 - float(np.mean(memory)), "latency": 1 - float(np.mean(latency)),
            "n": len(samples), "inside": inside, "memory_2sd": float(mem_cover), "latency_2sd": float(lat_cover),
            "memory_z": float(mem_z), "latency_z": float(lat_z)}


def _mark(value: float, target: float) -> str:
    return f"{100 * value:6.1f}% {'ok' if value >= target else '--'}"


def _repeatability(profile: TrainingProfile, clock: str) -> float:
    """1 - mean relative difference between two passes of the same point: the measurement's own accuracy."""
    diffs = []
    for row in profile.rows:
        values = row.latency_passes_ms if clock == "wall" else row.cpu_passes_ms
        diffs += [abs(a - b) / b for i, a in enumerate(values) for j, b in enumerate(values) if i != j]
    return 1 - float(np.mean(diffs)) if diffs else float("nan")


def _evaluations(source: TrainingProfile, other: TrainingProfile,
                 clock: str) -> list[tuple[str, list[TrainingSample], list[TrainingSample]]]:
    """(name, extra training samples, evaluation samples) for each question the benchmark asks."""
    rows = [r for r in other.rows if r.passed]
    other_samples = _samples(other, clock)
    calibration = [s for r, s in zip(rows, other_samples, strict=True) if (r.groups, r.batch) in CALIBRATION]
    rest = [s for r, s in zip(rows, other_samples, strict=True) if (r.groups, r.batch) not in CALIBRATION]
    return [
        (f"{ARCHS[0]} held-back", [], _samples(source, clock, held=True)),
        (f"{ARCHS[1]} never profiled", [], other_samples),
        (f"{ARCHS[1]} +{len(calibration)} of its points", calibration, rest),
    ]


def report(profiles: dict[str, TrainingProfile]) -> None:
    source, other = profiles[ARCHS[0]], profiles[ARCHS[1]]
    contention = [r.contention for p in profiles.values() for r in p.rows if r.contention is not None]
    print(f"host: {source.host}, {source.threads} torch thread(s); contention while timing: median "
          f"{100 * statistics.median(contention):.0f} %, max {100 * max(contention):.0f} %")
    print(f"fitted on {len(_samples(source, 'wall', held=False))} {ARCHS[0]} points (k in {TRAIN_K}, batch in "
          f"{TRAIN_BATCHES}); accuracy = 1 - mean relative error; ok = memory >= 96 % / latency >= 93 %")
    clocks = ("wall", "cpu") if all(r.cpu_ms is not None for r in source.rows if r.passed) else ("wall",)
    for clock in clocks:
        print(f"[{clock} clock] one pass of a point predicts another pass of it with latency accuracy "
              f"{100 * _repeatability(source, clock):.1f} % (the measurement noise floor)")
    print(f"{'clock':<5} {'predictor':<24} {'evaluated on':<30} {'n':>3} {'inside':>6} {'memory':>10} {'latency':>10}"
          f"  within 2 sd (goal 90-98 %): memory, latency; rms error/sd (1 = calibrated)")
    for clock in clocks:
        methods: tuple[Method, ...] = ("hybrid", "trees")
        for method in methods:
            for name, extra, samples in _evaluations(source, other, clock):
                model = TrainingCostModel.fit(_samples(source, clock, held=False) + extra,
                                              method=method, optimizer=source.optimizer)
                label = {"hybrid": "hybrid (default)", "trees": "perf4sight trees"}[method]
                a = accuracy(model, samples)
                print(f"{clock:<5} {label:<24} {name:<30} {a['n']:>3} {a['inside']:>6} "
                      f"{_mark(a['memory'], TARGETS['memory'])} {_mark(a['latency'], TARGETS['latency'])}"
                      f"  {100 * a['memory_2sd']:5.0f}% {100 * a['latency_2sd']:5.0f}%"
                      f"   {a['memory_z']:4.2f} {a['latency_z']:4.2f}")
    pooled(source)


def pooled(source: TrainingProfile) -> None:
    """The default predictor's self-estimate over every split in :data:`SPLITS` (wall clock), pooled."""
    errors: dict[str, list[float]] = {"memory": [], "latency": []}  # error / predicted sd
    for split in SPLITS:
        model = TrainingCostModel.fit(_samples(source, "wall", held=False, split=split), optimizer=source.optimizer)
        samples = _samples(source, "wall", held=True, split=split)
        for pred, s in zip(model.predict_many([(s.network, s.batch) for s in samples]), samples, strict=True):
            errors["memory"].append((pred.memory_mb - s.memory_mb) / pred.memory_sd_mb)
            errors["latency"].append((pred.latency_ms - s.latency_ms) / pred.latency_sd_ms)
    z = {t: np.asarray(v) for t, v in errors.items()}
    print(f"hybrid (default), wall clock, pooled over {len(SPLITS)} splits (held-back k in {{3, 2}}, batches "
          f"{TRAIN_BATCHES} or 2,4,16,64,128 profiled), {len(z['memory'])} errors per target: within 2 sd "
          + ", ".join(f"{t} {100 * np.mean(np.abs(v) <= 2):.0f} % (rms error/sd {np.sqrt(np.mean(v ** 2)):.2f})"
                      for t, v in z.items()) + " (goal 90-98 %)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--save", type=Path, metavar="DIR", help="write the measured profiles here")
    parser.add_argument("--load", type=Path, metavar="DIR", help="use profiles saved earlier instead of measuring")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per step (default 1, see the module docstring)")
    parser.add_argument("--passes", type=int, default=4,
                        help=f"sweeps of {ARCHS[0]} (half as many of {ARCHS[1]}); a point keeps its quietest")
    args = parser.parse_args()
    if args.threads < 1 or args.passes < 1:
        parser.error(f"--threads and --passes must be at least 1, got {args.threads} and {args.passes}")
    if args.load:
        missing = [f"{a}.json" for a in ARCHS if not (args.load / f"{a}.json").is_file()]
        if missing:
            parser.error(f"--load {args.load} lacks {', '.join(missing)}: pass a folder an earlier --save wrote")
    started = time.monotonic()
    if args.load:
        profiles = {a: parse_training_profile((args.load / f"{a}.json").read_text()) for a in ARCHS}
    else:
        profiles = {a: measure(a, args.threads, args.passes if a == ARCHS[0] else max(1, args.passes // 2))
                    for a in ARCHS}
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for arch, profile in profiles.items():
            (args.save / f"{arch}.json").write_text(profile.to_json())
    report(profiles)
    print(f"wall time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
