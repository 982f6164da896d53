"""Hostile requests for the daemon, by category, each with the replies it may get.

Every generator takes a ``random.Random`` (seeded by the benchmark, or driven by hypothesis through
``st.randoms()`` so failures shrink) and the :class:`Target` it attacks, and returns a :class:`Case`:
the frames to send and the set of outcomes allowed (``"ok"`` or an error code; ``None`` = any typed
error or success). No outcome may ever be ``internal``, which the daemon reserves for its own bugs.

Categories follow the issue: malformed frames, wrong versions, missing or extra fields, hostile
budgets (huge, negative, NaN, wrong types), wrong tensor shapes and dtypes, truncated buffers,
messages over the size limit, the same spread over many small frames (issue 20: no one frame is
large) or with too many frames, byte-level mutations of valid requests, batches too big to run, and
well-formed requests as controls.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from governor.core import protocol as p

__all__ = ["CATEGORIES", "Case", "Target"]

ANY_ERROR = frozenset({"bad_request", "too_large", "unsupported_version"})
CONTROL_TYPES = ("hello", "status", "profiles", "reload", "advise", "infer", "infer", "infer")
NUMERIC_DTYPES = ("<f4", "<f8", "<f2", "|u1", "|i1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8")
HOSTILE_NUMBERS: tuple[Any, ...] = (
    -1, 0, -0.0, 1e-300, 3_600_000, 3_600_000.001, 1e308, 2**64, 2**1000, True, "10", [], {}, None, -1e9, 0.5,
)
RAW_CONSTANTS = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")


@dataclass
class Target:
    """What the fuzzed daemon serves, and a fresh request id for every case."""

    input_shape: tuple[int, int, int]
    model: str
    max_bytes: int
    max_batch: int
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> str:
        """A fresh id. Fixed width, so the header's length (which later draws may use) never depends on
        how many cases came before: hypothesis must be able to replay a case exactly."""
        return f"fz-{next(self._ids):012d}"


@dataclass(frozen=True)
class Case:
    category: str
    frames: list[bytes]
    expect: frozenset[str] | None  # allowed outcomes; None = anything typed except "internal"
    request_id: str = ""  # the id a reply may echo ("" when the header is not readable)
    kind: str = ""  # the reply type a success must have


def _dumps(head: dict[str, Any]) -> bytes:
    return json.dumps(head, separators=(",", ":")).encode()


def _head(kind: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {"v": p.PROTOCOL_VERSION, "type": kind, "id": rid, **fields}


def _budget(rng: random.Random) -> dict[str, Any]:
    budget: dict[str, Any] = {}
    if rng.random() < 0.7:
        budget["deadline_ms"] = 10 ** rng.uniform(-3, 4)
    if rng.random() < 0.3:
        budget["min_accuracy"] = rng.uniform(0.01, 1.0)
    if rng.random() < 0.5:
        budget["objective"] = rng.choice(["min_energy", "max_accuracy", "min_latency"])
    return budget


def _input(rng: random.Random, t: Target, dtype: str = "<f4") -> np.ndarray:
    batch = () if rng.random() < 0.2 else (rng.randint(1, 4),)
    values = np.random.default_rng(rng.getrandbits(32)).uniform(0, 16, size=(*batch, *t.input_shape))
    return values.astype(dtype)


def _tensor_frames(array: np.ndarray, name: str = "x") -> tuple[dict[str, Any], bytes]:
    spec = {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "nbytes": array.nbytes}
    return spec, array.tobytes()


def _valid(rng: random.Random, t: Target) -> tuple[dict[str, Any], list[bytes]]:
    kind = rng.choice(CONTROL_TYPES)
    head = _head(kind, t.next_id())
    buffers: list[bytes] = []
    if kind in ("advise", "infer"):
        head["budget"] = _budget(rng)
        if rng.random() < 0.2:
            head["strict"] = True
        if rng.random() < 0.2:
            head["model"] = t.model
    if kind == "infer":
        spec, buf = _tensor_frames(_input(rng, t, rng.choice(NUMERIC_DTYPES)))
        head["tensors"], buffers = [spec], [buf]
    if kind == "hello" and rng.random() < 0.5:
        head["client"] = "fuzz/" + "x" * rng.randint(0, 40)
    return head, buffers


def _allowed(head: dict[str, Any]) -> frozenset[str]:
    return frozenset({"ok", "infeasible"} if head.get("strict") else {"ok"})


def control(rng: random.Random, t: Target) -> Case:
    head, buffers = _valid(rng, t)
    return Case("control", [_dumps(head), *buffers], _allowed(head), head["id"], head["type"])


def malformed(rng: random.Random, t: Target) -> Case:
    """Frames that are not a request at all: random bytes, broken UTF-8/JSON, non-objects, no frames."""
    choice = rng.randrange(8)
    if choice == 0:
        frames = [rng.randbytes(rng.randint(0, 300)) for _ in range(rng.randint(0, 4))]
        return Case("malformed", frames, None)
    header = {
        1: b"",
        2: b"\xff\xfe" + rng.randbytes(20),
        3: rng.choice([b"[]", b"null", b"42", b'"infer"', b"true", b"[1,2,3]"]),
        4: b"[" * rng.randint(1000, 60000),
        5: _dumps(_head("status", "a"))[: rng.randint(1, 20)],
        6: b'{"v":"1.0","type":"status","id":"d","id":"d"}',
        7: b'{"v":"1.0","type":"status","id":"x","extra":' + rng.choice(RAW_CONSTANTS).encode() + b"}",
    }[choice]
    return Case("malformed", [header], frozenset({"bad_request"}), "x" if choice == 7 else "")


def wrong_version(rng: random.Random, t: Target) -> Case:
    head, buffers = _valid(rng, t)
    choice = rng.randrange(3)
    if choice == 0:
        head["v"] = rng.choice(["2.0", "0.9", "10.3", "9999.9999", "0.0"])
        expect = frozenset({"unsupported_version"})
    elif choice == 1:
        bad = rng.choice([1.0, 1, "1", "1.0.0", "", None, "v1.0", "\uff11.0", [1, 0], {"major": 1}, "12345.0", " 1.0"])
        head["v"] = bad
        expect = frozenset({"bad_request"})
    else:
        head["v"] = f"1.{rng.randint(1, 9999)}"  # a newer minor of our major: readable
        expect = _allowed(head)
    return Case("wrong_version", [_dumps(head), *buffers], expect, head["id"], head["type"])


def fields(rng: random.Random, t: Target) -> Case:
    """A valid request with one field missing, unknown, or of the wrong type."""
    head, buffers = _valid(rng, t)
    choice = rng.randrange(7)
    if choice == 0:
        del head["type"]
    elif choice == 1:
        head["type"] = rng.choice(["infer2", "", 5, None, "INFER", "error", "hello "])
    elif choice == 2:
        head[rng.choice(["extra", "deadline_ms", "budget_ms", "tensors2", "k"])] = 1
    elif choice == 3:
        head["id"] = rng.choice([5, None, "bad id!", "x" * 65, "é", ["a"]])
    elif choice == 4:
        head["strict"] = rng.choice(["yes", 1, 0, None, [True]])
    elif choice == 5:
        head["budget"] = rng.choice([[], "fast", None, 5, {"deadline": 5}, {"deadline_ms": 5, "x": 1}])
    else:
        head["model"] = rng.choice(["", "bad name", "x" * 65, 7, "other-model"])
    rid = head["id"] if isinstance(head.get("id"), str) else ""
    # On hello/status/profiles/reload, strict/budget/model are unknown fields: a bad_request too.
    return Case("fields", [_dumps(head), *buffers], frozenset({"bad_request"}), rid)


def budgets(rng: random.Random, t: Target) -> Case:
    """An advise/infer whose budget holds one hostile value; valid values must still be served."""
    kind = rng.choice(["advise", "infer"])
    head = _head(kind, t.next_id(), budget=_budget(rng))
    key = rng.choice(["deadline_ms", "energy_mj", "min_accuracy", "objective"])
    buffers: list[bytes] = []
    if kind == "infer":
        spec, buf = _tensor_frames(_input(rng, t))
        head["tensors"], buffers = [spec], [buf]
    if rng.random() < 0.25:
        raw = rng.choice(RAW_CONSTANTS)
        head["budget"][key] = "@RAW@"
        text = _dumps(head).replace(b'"@RAW@"', raw.encode())
        return Case("budgets", [text, *buffers], frozenset({"bad_request"}), head["id"])
    value = rng.choice(HOSTILE_NUMBERS if key != "objective" else ("fastest", "", 5, None, "MIN_ENERGY"))
    head["budget"][key] = value
    ok = _budget_value_ok(key, value)
    # A valid energy budget is refused all the same by a daemon without a power sensor (the fuzzed host).
    refused = not ok or (key == "energy_mj" and value is not None)
    expect = frozenset({"bad_request"}) if refused else _allowed(head)
    return Case("budgets", [_dumps(head), *buffers], expect, head["id"], kind)


def _budget_value_ok(key: str, value: Any) -> bool:
    if value is None:  # null: unconstrained, or for objective the daemon's configured one
        return True
    if key == "objective":
        return value in ("min_energy", "max_accuracy", "min_latency")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    top = {"deadline_ms": p.MAX_DEADLINE_MS, "energy_mj": p.MAX_ENERGY_MJ, "min_accuracy": 1.0}[key]
    return 0 < value <= top


def tensors(rng: random.Random, t: Target) -> Case:
    """An infer whose tensors have the wrong shape, dtype, count, name, size or values."""
    head = _head("infer", t.next_id(), budget=_budget(rng))
    arr = _input(rng, t)
    spec, buf = _tensor_frames(arr)
    specs, buffers = [spec], [buf]
    choice = rng.randrange(8)
    expect = frozenset({"bad_request"})
    if choice == 0:
        shape = rng.choice([[1, 3, 8, 8], [1, 1, 8, 9], [1, 1, 8], [8, 8], [], [0, 1, 8, 8], [2, 2, 1, 8, 8],
                            [1, 1, 1, 1, 1, 1, 1, 1, 1, 8, 8], [0, 2**40, 2**40], [0, *[2**40] * 31], [1] * 33])
        spec.update(shape=shape, nbytes=int(np.prod(shape, dtype=object)) * 4 if len(shape) <= 32 else 4)
        buffers = [bytes(spec["nbytes"]) if spec["nbytes"] < 1 << 16 else b""]
    elif choice == 1:
        spec["shape"] = rng.choice([[-1, 1, 8, 8], [1.5, 1, 8, 8], ["1", 1, 8, 8], None, [2**41, 1, 8, 8], 5])
    elif choice == 2:
        spec["dtype"] = rng.choice([">f4", "<c8", "|O", "<U4", "float32", "<f16", "", 5, "|V4", "|S4"])
    elif choice == 3:
        cast = arr.astype("|b1")
        spec, buffers[0] = _tensor_frames(cast)
        specs = [spec]
    elif choice == 4:
        bad = arr.astype("<f4").copy()
        bad.flat[rng.randrange(bad.size)] = rng.choice([np.nan, np.inf, -np.inf])
        spec, buffers[0] = _tensor_frames(bad)
        specs = [spec]
    elif choice == 5:
        count = rng.choice([0, 2, 3, 64, 65])
        specs = [dict(spec, name=f"x{i}") for i in range(count)]
        buffers = [buf] * count
        expect = frozenset({"too_large"}) if count > 64 else expect
    elif choice == 6:
        spec["name"] = rng.choice(["", "a b", "x" * 65, "-x", None])
    else:
        specs, buffers = [spec, dict(spec)], [buf, buf]  # duplicate names
    head["tensors"] = specs
    return Case("tensors", [_dumps(head), *buffers], expect, head["id"])


def truncated(rng: random.Random, t: Target) -> Case:
    """A valid infer whose buffer or header was cut, padded, dropped or doubled."""
    head = _head("infer", t.next_id(), budget=_budget(rng))
    spec, buf = _tensor_frames(_input(rng, t))
    head["tensors"] = [spec]
    header = _dumps(head)
    choice = rng.randrange(5)
    if choice == 0:
        frames = [header, buf[: rng.randrange(len(buf))]]
    elif choice == 1:
        frames = [header, buf + rng.randbytes(rng.randint(1, 64))]
    elif choice == 2:
        frames = [header[: rng.randrange(1, len(header))], buf]
    elif choice == 3:
        frames = [header]
    else:
        frames = [header, buf, b""]
    return Case("truncated", frames, frozenset({"bad_request"}), head["id"] if choice != 2 else "")


def oversize(rng: random.Random, t: Target) -> Case:
    """Over the daemon's byte limit, the 64 KiB header limit or the frame-count limit."""
    rid = t.next_id()
    choice = rng.randrange(3)
    if choice == 0:
        per_sample = int(np.prod(t.input_shape)) * 4
        n = t.max_bytes // per_sample + rng.randint(1, 8)
        head = _head("infer", rid, tensors=[{"name": "x", "dtype": "<f4", "shape": [n, *t.input_shape],
                                            "nbytes": n * per_sample}])
        frames = [_dumps(head), bytes(n * per_sample)]
    elif choice == 1:
        frames = [_dumps(_head("hello", rid, client="x" * (p.MAX_HEADER_BYTES + rng.randint(0, 1000))))]
    else:
        frames = [_dumps(_head("status", rid))] + [b""] * rng.randint(p.MAX_TENSORS + 1, 200)
    return Case("oversize", frames, frozenset({"too_large"}))


def many_frames(rng: random.Random, t: Target) -> Case:
    """Over the byte limit in many frames none of which is near it, or over the frame count with tiny ones,
    after a well-formed header (an infer naming one tensor, or a status)."""
    rid = t.next_id()
    if rng.random() < 0.5:
        count = rng.randint(9, 40)
        size = t.max_bytes // 8 + rng.randint(0, 64)
        buffers = [rng.randbytes(16) * (size // 16)] * count
    else:
        buffers = [rng.randbytes(rng.randint(0, 16))] * rng.randint(p.MAX_TENSORS + 1, 300)
    if rng.random() < 0.5:
        head = _head("status", rid)
    else:
        spec, _ = _tensor_frames(_input(rng, t))
        head = _head("infer", rid, budget=_budget(rng), tensors=[spec])
    return Case("many_frames", [_dumps(head), *buffers], frozenset({"too_large"}))


# Ids clients may reuse or choose to look like the daemon's own keys (queued requests were once keyed
# by id, or by "anon-<n>" without one: a client sending "anon-2" crashed the daemon).
COLLIDING_IDS = ("", "1", "anon-0", "anon-1", "anon-2", "job")


def id_collision(rng: random.Random, t: Target) -> Case:
    """A valid request under an id other cases use too, with its own content: it must get its own reply
    (a reply remembered by id alone answered a status with an earlier infer's reply)."""
    head, buffers = _valid(rng, t)
    head["id"] = rng.choice(COLLIDING_IDS)
    return Case("id_collision", [_dumps(head), *buffers], _allowed(head), head["id"], head["type"])


def big_batch(rng: random.Random, t: Target) -> Case:
    """A well-formed infer with more samples than the daemon runs at once (but under the byte limit)."""
    n = t.max_batch + rng.randint(1, 64)
    arr = np.zeros((n, *t.input_shape), dtype="|u1")  # 1 byte per value keeps it under the byte limit
    spec, buf = _tensor_frames(arr)
    head = _head("infer", t.next_id(), tensors=[spec])
    return Case("big_batch", [_dumps(head), buf], frozenset({"too_large"}), head["id"])


def mutated(rng: random.Random, t: Target) -> Case:
    """A valid request after 1-4 byte-level edits: flips, truncations, insertions, frame drops/copies."""
    head, buffers = _valid(rng, t)
    frames = [bytearray(f) for f in (_dumps(head), *buffers)]
    for _ in range(rng.randint(1, 4)):
        target = frames[rng.randrange(len(frames))] if frames else bytearray()
        action = rng.randrange(5)
        if action == 0 and target:
            target[rng.randrange(len(target))] = rng.randrange(256)
        elif action == 1:
            del target[rng.randint(0, len(target)):]
        elif action == 2:
            at = rng.randint(0, len(target))
            target[at:at] = rng.randbytes(rng.randint(1, 8))
        elif action == 3 and frames:
            frames.pop(rng.randrange(len(frames)))
        elif frames:
            frames.append(bytearray(frames[rng.randrange(len(frames))]))
    return Case("mutated", [bytes(f) for f in frames], None)


def _hostile_latencies(rng: random.Random) -> Any:
    """A latency list that a stream report must refuse: a bad value in it, too many, or not a list."""
    choice = rng.randrange(4)
    if choice == 0:
        good = [rng.uniform(0.1, 50.0) for _ in range(rng.randint(0, 5))]
        good.insert(rng.randint(0, len(good)), rng.choice([0, -1.0, 3_600_000.001, 1e308, "5", None, True, []]))
        return good
    if choice == 1:
        return [1.0] * (p.MAX_BATCH_FRAMES + rng.randint(1, 10))
    return rng.choice([5.0, "fast", {}, None, [[1.0]]])


def leases_streams(rng: random.Random, t: Target) -> Case:
    """Lease and stream messages (protocol 1.1, 1.2) that must be refused: releases, reports and closes of
    ids this daemon never gave out, and acquires and stream opens with one hostile field. None of them may
    hold the board: a valid stream open is allowed (it holds clocks only, and ends when it goes silent)."""
    kind = rng.choice(["release", "stream_report", "stream_close", "acquire", "stream_open"])
    rid = t.next_id()
    unknown_id = rng.choice([f"L{rng.getrandbits(96):024x}", f"S{rng.getrandbits(96):024x}", "x"])
    head: dict[str, Any]
    if kind == "release":
        head = _head(kind, rid, lease_id=unknown_id, latency_ms=rng.choice([3.0, *HOSTILE_NUMBERS]))
        if rng.random() < 0.3:
            head["lease_id"] = rng.choice(["", "bad id!", "x" * 65, 5, None])
        return Case("leases_streams", [_dumps(head)], frozenset({"bad_request"}), rid)
    if kind in ("stream_report", "stream_close"):
        head = _head(kind, rid, stream_id=unknown_id)
        if kind == "stream_report":
            head["seq"] = rng.choice([0, 1, -1, 2**31 + 1, 0.5, "0", None])
            head["latencies_ms"] = _hostile_latencies(rng) if rng.random() < 0.6 else [2.0, 3.0]
            if rng.random() < 0.3:
                head["failed"] = rng.choice([1, -1, p.MAX_BATCH_FRAMES + 1, "1", None])
        if rng.random() < 0.2:
            head["stream_id"] = rng.choice(["", "bad id!", "x" * 65, 5, None])
        return Case("leases_streams", [_dumps(head)], frozenset({"bad_request"}), rid)
    head = _head(kind, rid, budget=_budget(rng))
    if kind == "acquire":  # only ever refused: a granted lease would hold the board for its ttl
        key = rng.choice(["expected_ms", "ttl_ms"])
        head[key] = rng.choice([[], [0.0], [-1.0], [1.0] * 4097, "5", {}, [None]] if key == "expected_ms" else
                               [0, -1.0, 60_000.001, 1e308, "5", []])
        return Case("leases_streams", [_dumps(head)], frozenset({"bad_request"}), rid)
    head["period_ms"] = rng.choice([33.0, 10 ** rng.uniform(-2, 3), *HOSTILE_NUMBERS])
    if rng.random() < 0.3:
        head["ttl_ms"] = rng.choice([500.0, 0, -1.0, 60_000.001, "5"])
    if rng.random() < 0.3:
        head["expected_ms"] = rng.choice([[1.0], [0.0], [], "5", [1.0] * 4097])
    valid = _stream_open_valid(head)
    # a valid open: a stream (or infeasible when strict; unavailable when 16 streams are open already);
    # expected_ms of the wrong length is the daemon's bad_request
    expect = frozenset({"ok", "unavailable", "bad_request"}) if valid else frozenset({"bad_request"})
    return Case("leases_streams", [_dumps(head)], expect, rid, "stream")


def _stream_open_valid(head: dict[str, Any]) -> bool:
    period, ttl, expected = head["period_ms"], head.get("ttl_ms", 1.0), head.get("expected_ms", [1.0])

    def number(v: Any, top: float) -> bool:
        return not isinstance(v, bool) and isinstance(v, (int, float)) and 0 < v <= top

    return (number(period, p.MAX_DEADLINE_MS) and number(ttl, 60_000.0) and isinstance(expected, list)
            and 1 <= len(expected) <= 4096 and all(number(v, p.MAX_DEADLINE_MS) for v in expected))


CATEGORIES: dict[str, Callable[[random.Random, Target], Case]] = {
    "control": control,
    "malformed": malformed,
    "wrong_version": wrong_version,
    "fields": fields,
    "budgets": budgets,
    "tensors": tensors,
    "truncated": truncated,
    "oversize": oversize,
    "many_frames": many_frames,
    "id_collision": id_collision,
    "big_batch": big_batch,
    "mutated": mutated,
    "leases_streams": leases_streams,
}
