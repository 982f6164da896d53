"""Catalogue boards as profiling spaces, with a synthetic board answering for them.

The spaces are built the way ``governor profile --board sim:NAME`` builds them (``board_space``: per
mapping its unit's clock x the memory clock x k, other domains at their minimum), from the catalogue's
frequency tables, which the simulated boards expose unchanged. The host's cpufreq is discovered at run
time; one shared policy with the fake tree's table stands in for it (the fake tree's four per-CPU
policies would make 7^4 points per mapping and k, too many for a fast test).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from profiling_synth import ArraySource

from governor.core.perf.space import Space
from governor.daemon.profiling import board_space
from governor.drivers.catalogue import board_names, load_board

BOARDS = tuple(board_names())
HOST_POLICY_HZ = (800_000_000, 1_200_000_000, 1_600_000_000, 2_000_000_000, 2_400_000_000, 2_800_000_000,
                  3_200_000_000)
HOST_CPUS = 4  # what the fake host tree has (governor.testing)


def domains_hz(board: str) -> dict[str, tuple[int, ...]]:
    """Every DVFS domain of a catalogue board and its frequencies (Hz)."""
    spec = load_board(board)
    found = {d.name: d.table_hz for d in spec.domains}
    if spec.discover_cpufreq and not found:
        found["cpu-policy0"] = HOST_POLICY_HZ
    return found


def catalogue_space(board: str, groups: int) -> Space:
    """The candidate points of a G-group model on a catalogue board (k = 1..G, as the CLI's default)."""
    meta = SimpleNamespace(groups=groups)  # board_space reads only the group count from the model file
    return board_space(load_board(board), domains_hz(board), meta, cpu_count=HOST_CPUS)  # type: ignore[arg-type]


def synthetic_board(space: Space, noise: float = 0.003, seed: int = 0) -> ArraySource:
    """Latency (ms) and board power (mW) of a made-up network at every candidate, with a little noise.

    Latency: a fixed part plus, per domain, work growing with k over that clock, shared by the threads.
    Power: static plus C V^2 f (~ f^3) per domain plus a little per active group.
    """
    g = space.grid[:, :-1] / np.array([max(fs) for fs in space.opp_hz])
    k = space.grid[:, -1]
    threads = np.array([int(m.partition("/")[2] or 1) for m in space.mappings])[space.mapping_of]
    weights = 2.0 / (1.0 + np.arange(g.shape[1]))
    latency = 1.0 + np.sum(weights * k[:, None] / g, axis=1) / threads**0.8
    power = 500.0 + np.sum(300.0 * g**3, axis=1) + 50.0 * k + 40.0 * threads
    rng = np.random.default_rng(seed)
    jitter = 1 + noise * rng.standard_normal((2, len(k)))
    return ArraySource(space, latency_ms=latency * jitter[0], power_mw=power * jitter[1])
