"""Seeded trace generators: the four shipped traces and any length or seed of them.

All four are written in reference-latency units (``time_unit: "ref"``, see
:mod:`governor.evaluate.traces`): 1 ref = the fastest full-network run of the model on the
board, so a trace loads a Jetson Nano with AlexNet and an Odroid with the digits model to the same
duty cycle. Shapes:

* ``steady``: a camera-like stream, one request every 10 ref (±10 % jitter), deadline = the
  period, full accuracy required (``"G"``): only DVFS and mapping can save energy.
* ``bursty``: bursts of 10-40 requests ~2.5 ref apart (exponential gaps) separated by idle gaps of
  ~150 ref; deadline 8 ref; one group may be dropped (``"G-1"``).
* ``budget-steps``: one request every 8 ref; the budget changes every quarter of the trace:
  relaxed (16 ref, full accuracy), tight (4 ref, ``G-1``), very tight (2 ref, no floor),
  back to moderate (8 ref, full accuracy).
* ``corunner``: ``steady``'s stream with a 6 ref deadline; a co-runner takes half of the unit the
  network runs on (``@inference``) during the middle third of the trace.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from governor.evaluate.traces import CoRunnerSpec, LoadPhase, Trace, TraceRequest

__all__ = ["TRACE_KINDS", "generate_trace"]


def _steady(n: int, rng: random.Random, *, period: float = 10.0, deadline: float = 10.0,
            floor: str | None = "G") -> list[TraceRequest]:
    t, out = 0.0, list[TraceRequest]()
    for _ in range(n):
        out.append(TraceRequest(round(t, 3), deadline, floor))
        t += period * rng.uniform(0.9, 1.1)
    return out


def steady(n: int, seed: int) -> Trace:
    rng = random.Random(seed)
    return Trace("steady", "ref", tuple(_steady(n, rng)), (),
                 "one request every 10 ref (+-10 %), deadline = period, full accuracy")


def bursty(n: int, seed: int) -> Trace:
    rng = random.Random(seed)
    t, out = 0.0, list[TraceRequest]()
    while len(out) < n:
        for _ in range(min(rng.randint(10, 40), n - len(out))):
            out.append(TraceRequest(round(t, 3), 8.0, "G-1"))
            t += rng.expovariate(1 / 2.5)
        t += rng.expovariate(1 / 150.0)
    return Trace("bursty", "ref", tuple(out), (),
                 "bursts of 10-40 requests ~2.5 ref apart, idle gaps ~150 ref; deadline 8 ref, floor G-1")


_STEPS: tuple[tuple[float, str | None], ...] = ((16.0, "G"), (4.0, "G-1"), (2.0, None), (8.0, "G"))


def budget_steps(n: int, seed: int) -> Trace:
    rng = random.Random(seed)
    times = [r.t for r in _steady(n, rng, period=8.0)]
    quarter = max(n // len(_STEPS), 1)
    out = [TraceRequest(t, *_STEPS[min(i // quarter, len(_STEPS) - 1)]) for i, t in enumerate(times)]
    return Trace("budget-steps", "ref", tuple(out), (),
                 "one request every 8 ref; budget per quarter: 16 ref/G, 4 ref/G-1, 2 ref/none, 8 ref/G")


def corunner(n: int, seed: int) -> Trace:
    rng = random.Random(seed)
    requests = _steady(n, rng, deadline=6.0)
    span = requests[-1].t
    phase = LoadPhase(round(span / 3, 3), round(2 * span / 3, 3), (CoRunnerSpec("@inference", 0.5, 0.2),))
    return Trace("corunner", "ref", tuple(requests), (phase,),
                 "steady stream, deadline 6 ref, full accuracy; a co-runner takes half of the inference unit "
                 "in the middle third")


TRACE_KINDS: dict[str, Callable[[int, int], Trace]] = {
    "steady": steady, "bursty": bursty, "budget-steps": budget_steps, "corunner": corunner,
}


def generate_trace(kind: str, *, requests: int = 600, seed: int = 0) -> Trace:
    """A trace of ``kind`` (see :data:`TRACE_KINDS`) with ``requests`` requests, reproducible from ``seed``."""
    if kind not in TRACE_KINDS:
        raise ValueError(f"unknown trace kind {kind!r}; choose one of {sorted(TRACE_KINDS)}")
    if requests < 4:
        raise ValueError(f"a trace needs at least 4 requests, not {requests}")
    return TRACE_KINDS[kind](requests, seed)
