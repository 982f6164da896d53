"""Shared pieces of the reliability tests: a quick model, a profile cache, fake trees, and the figures.

Profiling a board for real takes the daemon about 30 s on this VM, so the session profiles the
Jetson Nano fake tree once, with only 12 measured points (through the real drivers and the real
network), and every daemon the tests start loads that cached profile from ``$STATE_DIRECTORY/profiles``.
A fake tree's clocks do not change the host's speed, so the profiling runs are stretched by
top / current CPU clock (:class:`ClockScaledBackend`); without that the profile is noise and which
clock a budget gets is arbitrary. The profile lives in a temporary directory and is never shown.

Each test may add lines to ``figures`` (inputs tried, faults survived, requests served); they are
printed at the end of the run, so ``pytest tests/reliability`` reports how much it exercised.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from reliability_helpers import BOARD, MODEL_NAME, short_dir

from governor.drivers.catalogue import load_board
from governor.testing import FakeTree, make_fake_tree

FIGURES = pytest.StashKey[list[str]]()
CPU_POLICY = "sys/devices/system/cpu/cpufreq/policy0"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = []


def pytest_terminal_summary(terminalreporter: object, exitstatus: int, config: pytest.Config) -> None:
    lines = config.stash.get(FIGURES, [])
    if lines:
        terminalreporter.write_sep("-", "reliability figures")  # type: ignore[attr-defined]
        for line in lines:
            terminalreporter.write_line(line)  # type: ignore[attr-defined]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> list[str]:
    return request.config.stash[FIGURES]


@pytest.fixture
def scratch():
    made: list[Path] = []

    def make(prefix: str = "gr-") -> Path:
        made.append(short_dir(prefix))
        return made[-1]

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory: pytest.TempPathFactory, quick_digits_model: Path) -> Path:
    path = tmp_path_factory.mktemp("models") / f"{MODEL_NAME}.dgm"
    shutil.copyfile(quick_digits_model, path)  # the shared model of tests/conftest.py, under this name
    return path


class ClockScaledBackend:
    """A backend whose latency (ms) scales with the fake tree's CPU clock, as a real board's would."""

    simulated = False

    def __init__(self, backend: Any, tree: FakeTree) -> None:
        self.backend, self.tree = backend, tree
        self.top_khz = max(tree.spec.domain("cpu").table)

    def run(self, batch: Any, point: Any) -> Any:
        outcome = self.backend.run(batch, point)
        cur_khz = int(self.tree.sysfs.read(f"{CPU_POLICY}/scaling_cur_freq"))
        return replace(outcome, latency_ms=outcome.latency_ms * self.top_khz / cur_khz)


@pytest.fixture(scope="session")
def profiled_state(quick_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state directory whose ``profiles/quick/jetson-nano.json`` every daemon of the session loads."""
    from governor.daemon.backend import HostBackend
    from governor.daemon.profiling import board_table
    from governor.daemon.target import open_target
    from governor.runtime.executor import Executor

    state = tmp_path_factory.mktemp("state")
    root = short_dir("gr-prof-")
    try:
        tree = make_fake_tree(load_board(BOARD), root)
        target = open_target(BOARD, str(root))
        with Executor(quick_model, warmup_runs=0) as executor:
            assert executor.meta is not None
            backend = ClockScaledBackend(HostBackend(executor, target.spec), tree)
            board_table(target, backend, executor.meta, say=lambda _line: None,
                        cache=state / "profiles" / MODEL_NAME / f"{BOARD}.json", model_name=MODEL_NAME, max_points=12)
        target.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return state


@pytest.fixture
def nano_tree(scratch) -> FakeTree:
    return make_fake_tree(load_board(BOARD), scratch("gr-tree-"))
