"""The running daemon (in-process, real loop, model and drivers) under fuzzed requests.

Hypothesis draws a category and a random source and the generators of ``benchmarks/fuzz_cases.py``
build the request, so a failure shrinks to a small case; a seeded run then adds duplicates of
answered requests and health checks. ``benchmarks/fuzz_daemon.py`` runs the same code for
100,000+ inputs. The figures line at the end of the run says how many inputs were tried.
"""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import short_dir

from benchmarks.fuzz_cases import CATEGORIES
from benchmarks.fuzz_daemon import open_fuzz_daemon, run_fuzz
from governor.core import protocol as p

FUZZ = settings(max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def harness(quick_model):
    work = short_dir("gr-fz-")
    harness, close = open_fuzz_daemon(quick_model, work / "root")
    yield harness
    close()
    shutil.rmtree(work, ignore_errors=True)


@FUZZ
@given(category=st.sampled_from(sorted(CATEGORIES)), rng=st.randoms(use_true_random=False))
def test_reliability_fuzzed_requests_get_one_typed_reply_each(harness, category, rng):
    before = len(harness.report.findings)
    harness.run(CATEGORIES[category](rng, harness.target))
    assert harness.report.findings[before:] == []


def test_reliability_seeded_fuzz_with_duplicates_and_health_checks(harness, figures):
    report = run_fuzz(harness, random.Random(7), 2000, max_seconds=60)
    assert report.crashes == 0 and report.findings == [], report.findings[:3]
    assert report.outcomes["duplicate:cached"] >= 30  # every 50th input resent an answered infer
    assert harness.healthy()  # a well-formed infer still works after all that
    figures.append(f"fuzz (in-process daemon): {report.tried} inputs over {len(report.categories)} categories, "
                   f"{report.crashes} crashes, {len(report.findings)} wrong replies")


def tensor_header(shape: list[int], nbytes: int) -> bytes:
    spec = {"name": "x", "dtype": "<f4", "shape": shape, "nbytes": nbytes}
    return json.dumps({"v": "1.0", "type": "infer", "id": "t", "tensors": [spec]}).encode()


@pytest.mark.parametrize("shape", [[0, 2**40, 2**40], [0, *[2**40] * 31]])
def test_reliability_empty_tensor_with_overflowing_dims_is_a_bad_request(shape):
    """numpy refuses such shapes with ValueError even at 0 bytes; the decoder let it escape, which
    took the daemon down (found by the fuzzer)."""
    with pytest.raises(p.ProtocolError) as err:
        p.decode_request([tensor_header(shape, 0), b""])
    assert err.value.code == "bad_request" and "more elements" in err.value.message


def test_reliability_version_digits_are_ascii():
    """'１.0' (a full-width digit) matched \\d and passed as version 1.0 (found by the fuzzer)."""
    with pytest.raises(p.ProtocolError) as err:
        p.decode_request([json.dumps({"v": "\uff11.0", "type": "status", "id": "v"}).encode()])
    assert err.value.code == "bad_request"


def test_reliability_float64_input_beyond_float32_is_refused(harness):
    """1e300 is finite as float64 but inf once cast for the network (found by the fuzzer: NaN logits)."""
    x = np.full((1, *harness.target.input_shape), 1e300)
    frames = p.encode_request(p.InferRequest(id="big-values"), {"x": x})
    reply, _ = p.decode_reply(harness.feed([bytes(f) for f in frames])[0])
    assert reply.type == "error" and reply.code == "bad_request" and "float32" in reply.message
