"""Real data: board power of a Jetson TX2 over its full 1,144-setting DVFS grid, from 24 measurements."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from governor.core.perf.sampling import ActiveSampler, SamplerSettings, run_sampler
from governor.drivers.replay import ReplaySource, parse_table

# Real TX2 measurements, copied into the repository with their source named (tests/fixtures/tx2/README.md).
DATA = Path(__file__).resolve().parents[1] / "fixtures" / "tx2"


def _replay_text(bench: str) -> str:
    """The recorded grid as a replay table: the three setpoints and board power (VDD_IN) only."""
    path = DATA / f"tx2-power-grid-{bench}.csv"
    assert path.exists(), f"the real TX2 grid is missing: {path}"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    lines = ["cpu_khz,gpu_hz,emc_hz,power_mw"]
    lines += [f"{r['cpu_khz']},{r['gpu_hz']},{r['emc_hz']},{r['vdd_in_mw']}" for r in rows]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bench", ["cpubench", "membench"])
def test_board_power_within_3_percent_from_24_of_1144_settings(bench: str) -> None:
    table = parse_table(_replay_text(bench), f"tx2-{bench}")
    space, _ = table.space()
    source = ReplaySource(table)
    sampler = ActiveSampler(space, SamplerSettings(max_points=24, target_mape_pct=1.0))
    model = run_sampler(source, sampler)
    assert len(table.grid) == 1144
    assert len(source.served) == len(set(source.served)) == 24
    mean, std = model.predict("power_mw", "default", table.grid)
    truth = table.values["power_mw"]
    assert np.mean(np.abs(mean / truth - 1)) < 0.03
    assert np.mean(np.abs(mean - truth) <= 2 * std) > 0.9  # the stated uncertainty covers real errors
