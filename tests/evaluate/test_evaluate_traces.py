"""Trace files: generate -> save -> load round trips, shipped traces, resolution, and errors that say what to fix."""

import json
import re

import pytest

from governor.evaluate import TRACE_KINDS, generate_trace, load_trace, save_trace, shipped_traces
from governor.evaluate.traces import TraceError, dump_trace, parse_trace, resolve

UNITS = [("a57", "cpu"), ("gpu", "gpu")]
ACCURACY = {1: 0.70, 2: 0.76, 3: 0.79, 4: 0.81}


@pytest.mark.parametrize("kind", sorted(TRACE_KINDS))
def test_generated_trace_survives_a_file_round_trip(tmp_path, kind):
    trace = generate_trace(kind, requests=50, seed=7)
    back = load_trace(save_trace(trace, tmp_path / f"{kind}.json"))
    assert back == trace
    assert len(back.requests) == 50 and back.time_unit == "ref"
    assert all(b.t >= a.t for a, b in zip(back.requests, back.requests[1:], strict=False))


def test_generator_is_seeded():
    assert generate_trace("bursty", requests=80, seed=1) == generate_trace("bursty", requests=80, seed=1)
    assert generate_trace("bursty", requests=80, seed=1) != generate_trace("bursty", requests=80, seed=2)


def test_shipped_traces_are_the_generator_at_seed_0():
    shipped = shipped_traces()
    assert set(shipped) == set(TRACE_KINDS)
    for kind, path in shipped.items():
        assert load_trace(path) == generate_trace(kind, requests=600, seed=0)


def test_budget_steps_change_budget_each_quarter():
    trace = generate_trace("budget-steps", requests=40, seed=0)
    quarters = [trace.requests[i * 10:(i + 1) * 10] for i in range(4)]
    assert [{(r.deadline, r.floor) for r in q} for q in quarters] == [
        {(16.0, "G")}, {(4.0, "G-1")}, {(2.0, None)}, {(8.0, "G")}]


def test_resolve_scales_ref_units_and_maps_floors_and_units():
    raw = {"format": "governor-trace", "version": 1, "name": "t", "time_unit": "ref",
           "requests": [[0, 4, "G"], [10, 2, "G-1"], [20, 3, "k1"], [30, 5, 0.5], [40, 1, None]],
           "load": [{"start": 5, "end": 25, "corunners": [{"unit": "@inference", "share": 0.5}]},
                    {"start": 25, "end": 35, "corunners": [{"unit": "@cpu", "share": 0.3, "stall_ratio": 0.4}]}]}
    trace = parse_trace(json.dumps(raw))
    r = resolve(trace, ref_ms=2.0, groups=4, accuracy_of=ACCURACY.get, units=UNITS, inference_unit="gpu")
    assert [a.t_s for a in r.arrivals] == [0.0, 0.02, 0.04, 0.06, 0.08]
    assert [a.deadline_ms for a in r.arrivals] == [8.0, 4.0, 6.0, 10.0, 2.0]
    assert [a.min_accuracy for a in r.arrivals] == [0.81, 0.79, 0.70, 0.5, None]
    assert [c.unit for c in r.scenario.active(0.02)] == ["gpu"]
    assert [(c.unit, c.stall_ratio) for c in r.scenario.active(0.06)] == [("a57", 0.4)]
    assert r.scenario.active(0.08) == ()
    assert r.end_s == pytest.approx(0.082)


def test_ms_traces_are_taken_literally():
    trace = parse_trace(json.dumps({"format": "governor-trace", "version": 1, "time_unit": "ms",
                                    "requests": [[0, 20], [33.3, 20]]}))
    r = resolve(trace, ref_ms=2.0, groups=4, accuracy_of=ACCURACY.get, units=UNITS, inference_unit="gpu")
    assert [(a.t_s, a.deadline_ms) for a in r.arrivals] == [(0.0, 20.0), (pytest.approx(0.0333), 20.0)]


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "other"}, "not a trace"),
    ({"version": 2}, "version 2"),
    ({"time_unit": "s"}, "time_unit"),
    ({"requests": []}, "non-empty"),
    ({"requests": [[0, 5], [-1, 5]]}, "requests[1]: arrival must be non-negative"),
    ({"requests": [[5, 5], [1, 5]]}, "non-decreasing"),
    ({"requests": [[0, 0]]}, "deadline must be positive"),
    ({"requests": [[0, 5, "G+1"]]}, "floor 'G+1'"),
    ({"requests": [[0, 5, 1.5]]}, "(0, 1]"),
    ({"requests": [[0]]}, "[arrival, deadline]"),
    ({"load": [{"start": 5, "end": 1}]}, "end (1.0) must be after start"),
    ({"load": [{"start": 0, "end": 1, "corunners": [{"unit": "gpu", "share": 2}]}]}, "share must be within 0..1"),
    ({"load": [{"start": 0, "end": 1, "corunners": [{"share": 0.5}]}]}, "needs a \"unit\""),
])
def test_bad_traces_say_where_and_what(change, message):
    raw = {"format": "governor-trace", "version": 1, "time_unit": "ref", "requests": [[0, 5]]} | change
    with pytest.raises(TraceError, match=re.escape(message)):
        parse_trace(json.dumps(raw), "my.json")


def test_not_json_and_missing_file_are_clear(tmp_path):
    with pytest.raises(TraceError, match="not valid JSON"):
        parse_trace("{oops", "bad.json")
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "missing.json")


def test_unknown_corunner_unit_names_the_board_units():
    trace = parse_trace(json.dumps({"format": "governor-trace", "version": 1, "requests": [[0, 5]],
                                    "load": [{"start": 0, "end": 1, "corunners": [{"unit": "dsp", "share": 0.5}]}]}))
    with pytest.raises(TraceError, match=r"'dsp' is not on this board; use one of \['a57', 'gpu'\]"):
        resolve(trace, ref_ms=1.0, groups=4, accuracy_of=ACCURACY.get, units=UNITS, inference_unit="gpu")


def test_dump_is_one_request_per_line():
    text = dump_trace(generate_trace("steady", requests=5, seed=0))
    assert sum(1 for line in text.splitlines() if line.strip().startswith("[")) == 5
    assert parse_trace(text) == generate_trace("steady", requests=5, seed=0)
