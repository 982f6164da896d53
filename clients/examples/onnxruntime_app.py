"""An application that owns its inference engine (ONNX Runtime, one session per k) and lets
`governor serve` govern the board around it through leases (docs/protocol.md section 10a).

    governor convert mynets:build --input-shape 3,64,64 --out my.dgm     # or governor train ...
    governor serve --model my.dgm                                        # or --engine external --profile P
    python clients/examples/onnxruntime_app.py --model my.dgm --endpoint ipc:///run/governor/governor.sock

At start it writes the per-k ONNX files (`governor export`) unless they are there, opens one
onnxruntime session per k and measures each k's latency here (its ``expected_ms``). Then, per frame
of a steady stream: ``acquire`` a lease for the frame's deadline, run the k the daemon chose on
its engine, ``release`` with the time it took. It prints how many deadlines were met, which k were
chosen, and how far the daemon's predicted latency was from the measured one in the first and the
last quarter of the run (the daemon learns the engine from the releases).

With ``--stream`` it opens one stream instead (docs/protocol.md section 10c): the daemon holds the
point's clocks, the application reads the current point per frame without a round trip, reports the
frames in batches, and gets a new point pushed when the daemon changes it.

The same loops with TensorRT engines on a Jetson are in docs/jetson.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
from governor_client import Client, GovernorError


class Engines:
    """One CPU session per (k, threads), from `governor export MODEL --onnx DIR` (run here if the files are
    missing); a session is opened the first time the daemon's point names its k and thread count."""

    def __init__(self, model: Path, onnx_dir: Path, groups: int) -> None:
        self.files = {k: onnx_dir / f"{model.stem}_k{k}.onnx" for k in range(1, groups + 1)}
        if not all(f.exists() for f in self.files.values()):
            subprocess.run([sys.executable, "-m", "governor", "export", str(model), "--onnx", str(onnx_dir)],
                           check=True, stdout=subprocess.DEVNULL)
        self._open: dict[tuple[int, int], ort.InferenceSession] = {}

    def __call__(self, k: int, threads: int = 1) -> ort.InferenceSession:
        if (k, threads) not in self._open:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads  # the mapping the daemon chose: that many cores
            self._open[k, threads] = ort.InferenceSession(str(self.files[k]), options,
                                                          providers=["CPUExecutionProvider"])
        return self._open[k, threads]


def frames(shape: tuple[int, ...], rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless batches of one: scikit-learn's digits for a 1x8x8 model, else uniform noise in 0..1."""
    if shape == (1, 8, 8):
        from sklearn.datasets import load_digits

        images = load_digits().images.astype(np.float32)
        while True:
            yield images[rng.integers(len(images))][None, None]
    while True:
        yield rng.random((1, *shape), dtype=np.float32)


def run_ms(session: ort.InferenceSession, frame: np.ndarray) -> float:
    start = time.perf_counter()
    session.run(None, {session.get_inputs()[0].name: frame})
    return (time.perf_counter() - start) * 1000.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", help="the daemon's endpoint (default: the client library's)")
    ap.add_argument("--model", type=Path, required=True, help="the model file the daemon serves")
    ap.add_argument("--onnx-dir", type=Path, help="per-k ONNX files (default: MODEL's directory / onnx)")
    ap.add_argument("--requests", type=int, default=200, help="frames to run")
    ap.add_argument("--period-ms", type=float, default=20.0, help="one frame every this many ms")
    ap.add_argument("--deadline-ms", type=float, default=15.0, help="each frame's deadline")
    ap.add_argument("--objective", choices=("min_energy", "max_accuracy", "min_latency"),
                    help="what the daemon optimises among the points that meet the deadline (default: its own)")
    ap.add_argument("--stream", action="store_true",
                    help="open one stream (protocol 1.2) instead of a lease per frame: the daemon pushes the point")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        with Client(args.endpoint, timeout_ms=10000) as gov:
            shape = tuple(gov.hello.interface.inputs[0].shape)  # type: ignore[union-attr]
            served = gov.profiles()
            groups = next(info.groups for info in served.profiles if info.model == (served.active or gov.hello.model))
            engines = Engines(args.model, args.onnx_dir or args.model.parent / "onnx", groups)
            stream = frames(shape, np.random.default_rng(args.seed))
            frame = next(stream)
            expected = [statistics.median(run_ms(engines(k), frame) for _ in range(20)) for k in range(1, groups + 1)]
            print("measured here, ms per k: " + " / ".join(f"{v:.2f}" for v in expected))
            if args.stream:
                return streamed(gov, engines, stream, expected, args)
            met, accepted, chosen, errors = 0, 0, [], []
            for _ in range(args.requests):
                started = time.perf_counter()
                frame = next(stream)
                with gov.lease(deadline_ms=args.deadline_ms, expected_ms=expected, objective=args.objective) as lease:
                    latency = run_ms(engines(lease.k, lease.point.mapping.threads), frame)
                    lease.report(latency)
                assert lease.released is not None
                if not lease.budget_infeasible:  # the deadlines the daemon accepted
                    accepted += 1
                    met += lease.released.budget_met
                chosen.append(lease.k)
                # what the deadline is checked against: the daemon's end-to-end time, acquire to release
                errors.append(abs(lease.predicted.latency_ms - lease.released.total_ms))
                time.sleep(max(0.0, args.period_ms / 1000.0 - (time.perf_counter() - started)))
    except GovernorError as exc:  # DaemonUnreachable is one
        print(f"onnxruntime_app: {exc}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as exc:
        print(f"onnxruntime_app: `governor export` failed (exit {exc.returncode}); run it by hand to see why",
              file=sys.stderr)
        return 2
    if not chosen:
        return 0
    quarter = max(len(errors) // 4, 1)
    ks = {k: chosen.count(k) for k in sorted(set(chosen))}
    first, last = (statistics.fmean(part) for part in (errors[:quarter], errors[-quarter:]))
    share = 100 * met / max(accepted, 1)
    print(f"{len(chosen)} leases released; deadlines met {met}/{accepted} accepted ({share:.1f} %); "
          f"k chosen {ks}; mean |predicted - end-to-end| latency: first quarter {first:.3f} ms, "
          f"last quarter {last:.3f} ms")
    return 0


def streamed(gov: Client, engines: Engines, frames: Iterator[np.ndarray], expected: list[float],
             args: argparse.Namespace) -> int:
    """The camera-pipeline loop: one stream, the current point read locally per frame, frames reported in
    batches; the daemon pushes a new point when it changes it."""
    chosen: list[int] = []
    with gov.stream(period_ms=args.period_ms, deadline_ms=args.deadline_ms, expected_ms=expected,
                    objective=args.objective) as s:
        for _ in range(args.requests):
            started = time.perf_counter()
            frame = next(frames)
            point = s.point  # no round trip: the latest point the daemon pushed
            s.report(run_ms(engines(point.k, point.mapping.threads), frame))
            chosen.append(point.k)
            time.sleep(max(0.0, args.period_ms / 1000.0 - (time.perf_counter() - started)))
    closed = s.closed
    assert closed is not None
    ks = {k: chosen.count(k) for k in sorted(set(chosen))}
    print(f"{closed.frames} frames streamed; deadlines met {closed.met}/{closed.frames} "
          f"({100 * closed.met / max(closed.frames, 1):.1f} %); k chosen {ks}; points pushed {s.changes}; "
          f"mean latency {closed.mean_latency_ms or 0.0:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
