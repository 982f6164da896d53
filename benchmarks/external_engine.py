"""An application's own engine governed by `governor serve`, with background load coming and going (issue 18).

    python benchmarks/external_engine.py --model r18-ft.dgm [--deadline-ms 6] [--load 1] [--requests 1500]
        [--period-ms 25] [--objective max_accuracy] [--modes lease,stream]

Starts `governor serve --model MODEL` on this host, then runs clients/examples/onnxruntime_app.py
against it once per mode: ``lease`` (one lease per frame) and ``stream`` (one stream, the point pushed,
frames reported in batches), one after the other on the same daemon. Meanwhile ``--load`` busy-loop
processes run 2 s on and 2 s off (one is what `governor demo` uses on a 2-core VM). Prints each run's
summary line: deadlines met of those the daemon accepted, the k chosen, and for leases how far the
daemon's predictions were from the end-to-end times in the first and last quarter of the run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "clients" / "examples" / "onnxruntime_app.py"


def _spin(stop: mp.synchronize.Event) -> None:
    """Busy 2 s, idle 2 s, until told to stop."""
    while not stop.is_set():
        until = time.monotonic() + 2.0
        while time.monotonic() < until and not stop.is_set():
            pass
        stop.wait(2.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--deadline-ms", type=float, default=6.0)
    ap.add_argument("--period-ms", type=float, default=25.0)
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--load", type=int, default=1, help="busy-loop processes, 2 s on / 2 s off")
    ap.add_argument("--objective", default="max_accuracy")
    ap.add_argument("--modes", default="lease,stream")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gext-", dir="/tmp") as d:
        endpoint = f"ipc://{d}/g.sock"
        daemon = subprocess.Popen([sys.executable, "-m", "governor", "serve", "--model", str(args.model), "--endpoint",
                                   endpoint, "--state-file", f"{d}/state.json"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(args.load)]
        try:
            while not Path(d, "g.sock").exists():
                if daemon.poll() is not None:
                    raise SystemExit("governor serve did not start; run it by hand to see why")
                time.sleep(0.1)
            for s in spinners:
                s.start()
            for mode in args.modes.split(","):
                cmd = [sys.executable, str(APP), "--model", str(args.model), "--endpoint", endpoint, "--requests",
                       str(args.requests), "--period-ms", str(args.period_ms), "--deadline-ms", str(args.deadline_ms),
                       "--objective", args.objective, *(["--stream"] if mode == "stream" else [])]
                done = subprocess.run(cmd, capture_output=True, text=True)
                lines = done.stdout.strip().splitlines() or [done.stderr.strip()]
                print(f"{mode} (deadline {args.deadline_ms:g} ms, load {args.load}): {lines[-1]}", flush=True)
        finally:
            stop.set()
            for s in spinners:
                s.join(5)
            daemon.terminate()
            daemon.wait(30)


if __name__ == "__main__":
    main()
