"""``governor evaluate``: our policy against the baselines users have today, on request traces, simulated.

A composition layer above the daemon: it builds simulated boards, runs the real daemon loop on them
in virtual time (:mod:`governor.evaluate.replay`) under each policy (:mod:`governor.evaluate.policies`),
and reports figures that are all simulated. Entry point: :func:`evaluate`; see ``docs/evaluate.md``.
"""

from governor.evaluate.generate import TRACE_KINDS, generate_trace
from governor.evaluate.policies import POLICIES, make_policies
from governor.evaluate.session import EvalConfig, EvaluateError, Evaluation, evaluate, find_trace, shipped_traces
from governor.evaluate.traces import Trace, TraceError, load_trace, save_trace

__all__ = [
    "POLICIES", "TRACE_KINDS", "EvalConfig", "EvaluateError", "Evaluation", "Trace", "TraceError", "evaluate",
    "find_trace", "generate_trace", "load_trace", "make_policies", "save_trace", "shipped_traces",
]
