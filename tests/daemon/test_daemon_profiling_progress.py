"""First-start profiling in `governor serve` says how far it is and how long is left, as `governor profile` does."""

import re

import pytest

from governor.daemon.backend import SimBackend
from governor.daemon.profiling import board_table
from governor.daemon.target import open_target
from governor.sim import SimExecutor, workload_from_meta

LINE = re.compile(r"^profiling: \[#* *\] (\d+)/(\d+) points \(of \d+\), ETA <= \d+ s$")


@pytest.fixture
def nano(quick_model):
    from governor.core.modelmeta import read_model_meta

    meta = read_model_meta(quick_model.read_bytes())
    target = open_target("sim:jetson-nano", clock="virtual")
    backend = SimBackend(SimExecutor(target.sim, workload_from_meta(meta)), None, len(meta.classes))
    yield target, backend, meta
    target.close()


def test_first_start_profiling_reports_progress_with_an_eta(nano):
    target, backend, meta = nano
    said: list[str] = []
    board_table(target, backend, meta, say=said.append, max_points=16, progress_every_s=0.0)
    progress = [LINE.match(line) for line in said if line.startswith("profiling: ")]
    assert progress and all(progress), said
    done = [int(m.group(1)) for m in progress if m]
    assert done == list(range(1, len(done) + 1))  # one line per point when asked for every point
    assert {int(m.group(2)) for m in progress if m} == {16}


def test_progress_lines_are_spaced_by_default(nano):
    target, backend, meta = nano
    said: list[str] = []
    board_table(target, backend, meta, say=said.append, max_points=16)  # a fast virtual board: well under 10 s
    progress = [line for line in said if line.startswith("profiling: ")]
    assert 1 <= len(progress) <= 3, progress  # the first point, maybe one 10 s later, the last
    assert progress[0].startswith("profiling: [") and " 1/16 points " in progress[0]


def test_progress_eta_and_bar():
    from governor.daemon.progress import Progress

    now = [100.0]
    progress = Progress(10, resumed=2, every_s=5.0, clock=lambda: now[0])
    now[0] += 8.0  # 4 points measured in this run (2 were resumed) in 8 s: 2 s a point, 4 left
    assert progress.eta_s(6) == pytest.approx(8.0)
    assert progress.line(6, 500) == f"[{'#' * 18:<30}] 6/10 points (of 500), ETA <= 8 s"
    assert progress.due() and not progress.due()
    now[0] += 5.0
    assert progress.due()


def test_a_budget_above_the_candidates_counts_to_the_candidates():
    from governor.daemon.progress import Progress

    now = [0.0]
    progress = Progress(48, clock=lambda: now[0])  # a host: 8 points, a budget of 48
    now[0] += 4.0
    assert progress.line(4, 8) == f"[{'#' * 15:<30}] 4/8 points (of 8), ETA <= 4 s"
