"""Per-tick cost of the drivers: Board.sample() and Board.apply() on the fake tree of every board.

The driver cost is measured through a plain SysfsRoot over the fake tree's files (open/read/close
per attribute, as on a board, minus the sensor bus time a real INA3221/INA231 or debugfs adds).
The same sample() through the FakeSysfsRoot (kernel semantics, fault bookkeeping) is shown too:
that is what tests and the simulator pay. apply() alternates the bottom and the top of every
table, so every call really writes (unchanged values would be skipped).

Run: python benchmarks/drivers_sample.py [--ticks 300] [--boards jetson-tx2,odroid-xu3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from governor.core.types import Setpoints
from governor.drivers._sysfs import SysfsRoot
from governor.drivers.board import Board, open_board
from governor.drivers.catalogue import board_names, load_board
from governor.testing import make_fake_tree


def _timed_us(call, ticks: int) -> list[float]:
    out = []
    for i in range(ticks):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1e6)
    return sorted(out)


def _ends(board: Board) -> tuple[Setpoints, Setpoints]:
    tables = {name: d.available_hz() for name, d in board.domains.items()}
    return Setpoints({n: t[0] for n, t in tables.items()}), Setpoints({n: t[-1] for n, t in tables.items()})


def measure(name: str, ticks: int, directory: Path) -> tuple[int, list[float], list[float], list[float]]:
    """(domains, sample µs, apply µs, sample µs through the fake root), each sorted."""
    tree = make_fake_tree(load_board(name), directory / name)
    board = open_board(tree.spec, SysfsRoot(tree.root), clock=time.monotonic)
    low, high = _ends(board)
    reads = _timed_us(lambda _: board.sample(), ticks)
    writes = _timed_us(lambda i: board.apply(high if i % 2 else low), ticks)
    faked = open_board(tree.spec, tree.sysfs, clock=time.monotonic)
    fake_reads = _timed_us(lambda _: faked.sample(), max(ticks // 10, 5))
    return len(board.domains), reads, writes, fake_reads


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=300)
    parser.add_argument("--boards", default=",".join(board_names()))
    args = parser.parse_args()
    print(f"{'board':18} {'domains':>7} {'sample med':>10} {'p99':>7} {'apply med':>10} {'p99':>7} {'fake sample':>11}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.boards.split(","):
            domains, reads, writes, fake = measure(name, args.ticks, Path(tmp))
            print(
                f"{name:18} {domains:7d} {statistics.median(reads):10.0f} {_p(reads, 0.99):7.0f} "
                f"{statistics.median(writes):10.0f} {_p(writes, 0.99):7.0f} {statistics.median(fake):11.0f}"
            )
    print("all figures in µs per call")


if __name__ == "__main__":
    main()
