"""Fuzz the running daemon in-process: every hostile request gets exactly one typed reply, none crashes it.

The daemon is the real one (:class:`governor.daemon.service.Daemon`, its loop driven through
``step()``, real drivers on a fake host tree, the real torch model and measured table); only the
transport is a recording one, so 100,000 requests take minutes, not hours. Each request comes from
:mod:`benchmarks.fuzz_cases` and is checked: the daemon raised nothing, exactly one reply came, it
decodes, its outcome is one the case allows and never ``internal``, it echoes the id or ``""``.
Every few hundred requests a duplicate of an answered ``infer`` must get the cached reply byte for
byte without running again, and a well-formed ``infer`` must still succeed.

With ``--floods N`` it first runs N rounds of :mod:`benchmarks.fuzz_floods` over a real ipc socket:
floods of raw, garbage-speaking and ZMTP connections and many-frame messages, each round bounded.

Run: python benchmarks/fuzz_daemon.py [--inputs 100000] [--seed 0] [--max-seconds 1800] [--model FILE] [--floods N]
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.fuzz_cases import CATEGORIES, Case, Target
from governor.core import protocol as p

__all__ = ["FUZZ_MAX_BYTES", "FuzzHarness", "FuzzReport", "judge", "open_fuzz_daemon", "run_fuzz", "train_quick_model"]

FUZZ_MAX_BYTES = 2 * 2**20  # the configurable limit under test: small, so over-size inputs stay cheap
DUPLICATE_EVERY = 50
HEALTH_EVERY = 500


class RecordingServer:
    """The daemon's transport here: requests queued by the harness, replies kept per identity."""

    def __init__(self) -> None:
        self.inbox: collections.deque[tuple[Any, list[memoryview]]] = collections.deque()
        self.replies: dict[Any, list[list[bytes]]] = collections.defaultdict(list)
        self.published = 0

    def recv(self, timeout_ms: int | None = None) -> tuple[Any, list[memoryview]] | None:
        return self.inbox.popleft() if self.inbox else None

    def send(self, identity: Any, frames: Iterable[Any]) -> None:
        self.replies[identity].append([bytes(f) for f in frames])

    def publish(self, frames: Iterable[Any]) -> None:
        self.published += 1

    def is_empty(self) -> bool:
        return not self.inbox


@dataclass
class FuzzReport:
    tried: int = 0
    seconds: float = 0.0
    categories: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    findings: list[str] = field(default_factory=list)
    crashes: int = 0

    def lines(self) -> list[str]:
        by_cat: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for key, n in self.outcomes.items():
            cat, outcome = key.split(":", 1)
            by_cat[cat][outcome] += n
        out = [f"{'category':<14} {'inputs':>8}  outcomes"]
        for cat in sorted(self.categories):
            mix = ", ".join(f"{o} {n}" for o, n in by_cat[cat].most_common())
            out.append(f"{cat:<14} {self.categories[cat]:>8}  {mix}")
        rate = self.tried / max(self.seconds, 1e-9)
        out.append(f"{'total':<14} {self.tried:>8}  in {self.seconds:.1f} s ({rate:.0f}/s); "
                   f"crashes {self.crashes}; findings {len(self.findings)}")
        return out


def judge(case: Case, replies: list[list[bytes]]) -> str:
    """The outcome of ``case`` (``"ok"`` or the error code); AssertionError says what is wrong with the replies."""
    assert len(replies) == 1, f"{len(replies)} replies instead of exactly one"
    try:
        msg, outputs = p.decode_reply(replies[0], max_bytes=2**31)
    except p.ProtocolError as exc:
        raise AssertionError(f"the reply does not decode: {exc}") from None
    outcome = msg.code if isinstance(msg, p.ErrorReply) else "ok"
    assert outcome != "internal", f"internal error: {getattr(msg, 'message', '')}"
    assert outcome == "ok" or outcome in p.ERROR_CODES, f"unknown error code {outcome!r}"
    assert case.expect is None or outcome in case.expect, \
        f"outcome {outcome} ({getattr(msg, 'message', '')[:200]}) not in {sorted(case.expect)}"
    assert msg.id in ("", case.request_id) or case.expect is None, f"reply id {msg.id!r} != {case.request_id!r}"
    if outcome == "ok" and case.kind:
        assert msg.type == case.kind, f"a {case.kind} request got a {msg.type} reply"
    if isinstance(msg, p.InferReply):  # finite outputs only for sane inputs: 1e30 pixels may overflow the net
        logits = next(iter(outputs.values()))
        assert logits.ndim == 2 and (case.category != "control" or np.all(np.isfinite(logits))), \
            f"bad outputs {logits.shape}: {logits[:1]}"
    return outcome


class FuzzHarness:
    """Feeds cases to a daemon and judges its replies (see the module doc)."""

    def __init__(self, daemon: Any, server: RecordingServer, target: Target) -> None:
        self.daemon, self.server, self.target = daemon, server, target
        self.report = FuzzReport()
        self._identities = 0
        self._answered: tuple[list[bytes], list[bytes], float] | None = None  # (request, reply, when)

    def feed(self, frames: list[bytes]) -> list[list[bytes]]:
        """Deliver one request through the daemon's loop and return the replies to it."""
        self._identities += 1
        identity = b"fuzz-%d" % self._identities
        self.server.inbox.append((identity, [memoryview(f) for f in frames]))
        while self.server.inbox or self.daemon.machine.pending:
            self.daemon.step()
        return self.server.replies.pop(identity, [])

    def run(self, case: Case) -> str:
        """Feed and judge one case; a crash or a wrong reply is recorded as a finding."""
        self.report.tried += 1
        self.report.categories[case.category] += 1
        try:
            replies = self.feed(case.frames)
        except Exception:
            self.report.crashes += 1
            return self._finding(case, "the daemon raised:\n" + traceback.format_exc(limit=6))
        try:
            outcome = judge(case, replies)
        except AssertionError as exc:
            return self._finding(case, str(exc))
        self.report.outcomes[f"{case.category}:{outcome}"] += 1
        if case.category == "control" and case.kind == "infer" and outcome == "ok":
            self._answered = (case.frames, replies[0], time.monotonic())
        return outcome

    def _finding(self, case: Case, problem: str) -> str:
        preview = [bytes(f[:120]) for f in case.frames[:3]]
        self.report.findings.append(f"[{case.category}] {problem.strip()}\n    frames: {preview}")
        return "finding"

    def duplicate(self) -> None:
        """Resend an answered infer: the cached reply must come back byte for byte, without a new run."""
        if self._answered is None or time.monotonic() - self._answered[2] > 20.0:
            return
        frames, reply, _ = self._answered
        served = self.daemon.served
        case = Case("duplicate", frames, frozenset({"ok"}))
        self.report.tried += 1
        self.report.categories["duplicate"] += 1
        replies = self.feed(frames)
        if replies != [reply] or self.daemon.served != served:
            self._finding(case, f"duplicate answered {len(replies)} times, served {served} -> {self.daemon.served}, "
                                f"same bytes: {replies == [reply]}")
            return
        self.report.outcomes["duplicate:cached"] += 1

    def healthy(self) -> bool:
        """A well-formed infer still succeeds (the daemon kept serving)."""
        head = {"v": p.PROTOCOL_VERSION, "type": "infer", "id": f"health-{self.report.tried}",
                "budget": {"deadline_ms": 5000.0}}
        x = np.ones((1, *self.target.input_shape), dtype=np.float32)
        frames = p.encode_request(p.InferRequest.model_validate({**head, "tensors": []}), {"x": x})
        replies = self.feed([bytes(f) for f in frames])
        return len(replies) == 1 and p.decode_reply(replies[0])[0].type == "infer"


def run_fuzz(harness: FuzzHarness, rng: random.Random, inputs: int, max_seconds: float,
             categories: Iterable[str] = (), progress: Callable[[FuzzReport], None] | None = None) -> FuzzReport:
    """Feed ``inputs`` cases (fewer if ``max_seconds`` runs out), round-robin over the categories."""
    names = list(categories) or list(CATEGORIES)
    start = time.monotonic()
    report = harness.report
    for i in range(inputs):
        if time.monotonic() - start > max_seconds:
            break
        harness.run(CATEGORIES[names[i % len(names)]](rng, harness.target))
        if i % DUPLICATE_EVERY == DUPLICATE_EVERY - 1:
            harness.duplicate()
        if i % HEALTH_EVERY == HEALTH_EVERY - 1:
            if not harness.healthy():
                report.findings.append(f"a well-formed infer failed after {report.tried} inputs")
            if progress is not None:
                report.seconds = time.monotonic() - start
                progress(report)
    report.seconds = time.monotonic() - start
    return report


def open_fuzz_daemon(model: Path, root: Path, *, max_bytes: int = FUZZ_MAX_BYTES,
                     server: Any = None) -> tuple[FuzzHarness, Callable[[], None]]:
    """A daemon on a fresh fake host tree under ``root`` (which must be empty), and its closer. Its transport
    is a recording one unless ``server`` is given (a real ZmqServerEnd, for the connection floods)."""
    from governor.daemon.backend import HostBackend
    from governor.daemon.config import Config, machine_settings
    from governor.daemon.service import assemble
    from governor.daemon.tables import host_points, measure_table
    from governor.daemon.target import open_target
    from governor.drivers.catalogue import load_board
    from governor.runtime.executor import Executor
    from governor.testing import make_fake_tree

    make_fake_tree(load_board("host"), root)
    target = open_target("host", str(root))
    executor = Executor(model)
    backend = HostBackend(executor, target.spec)
    meta = executor.meta
    assert meta is not None
    dummy = np.zeros((1, *meta.input_shape), dtype=np.float32)
    points = [pt for pt in host_points(target.spec, meta, 2) if pt.threads == 1]
    table = measure_table(points, lambda pt: (backend.run(dummy, pt).latency_ms, None), meta, reps=3)
    recording = RecordingServer()
    end = server or recording
    daemon = assemble(target.spec, target.board, backend, meta, model.stem, table, end, machine_settings(Config()),
                      cpu_count=2, tick_hz=20, max_bytes=max_bytes,
                      telemetry=getattr(end, "publish", lambda _frames: None))
    fuzz_target = Target(tuple(meta.input_shape), model.stem, max_bytes, daemon.max_batch)

    def close() -> None:
        executor.close()
        target.close()

    return FuzzHarness(daemon, recording, fuzz_target), close


def train_quick_model(path: Path) -> Path:
    """The small digits model the tests use (1 epoch per stage: seconds, still a real dynamic net)."""
    from governor.runtime.bundled import train_default_model
    from governor.runtime.training import TrainConfig

    return train_default_model(path, TrainConfig(arch="resnet-small", groups=4, epochs=1, width=0.5, seed=0))


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--model", type=Path, help="model file (default: train the quick test model)")
    parser.add_argument("--floods", type=int, default=0, metavar="N",
                        help="also N rounds of connection floods and many-frame messages over a real ipc socket")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gov-fuzz-") as tmp:
        model = args.model or train_quick_model(Path(tmp) / "quick.dgm")
        if args.floods:
            from benchmarks.fuzz_floods import run_floods_on_ipc

            floods = run_floods_on_ipc(model, Path(tmp), random.Random(args.seed), args.floods, args.max_seconds)
            print("\n".join(floods.lines()))
            for finding in floods.findings[:20]:
                print("FINDING", finding)
            if floods.findings:
                return 1
        harness, close = open_fuzz_daemon(model, Path(tmp) / "root")
        try:
            rss0 = _rss_mib()
            report = run_fuzz(harness, random.Random(args.seed), args.inputs, args.max_seconds,
                              progress=lambda r: print(f"  {r.tried} inputs, {r.seconds:.0f} s, "
                                                       f"findings {len(r.findings)}", file=sys.stderr, flush=True))
            rss1 = _rss_mib()
        finally:
            close()
    print("\n".join(report.lines()))
    print(f"daemon served {harness.daemon.served} inferences; process RSS {rss0:.0f} -> {rss1:.0f} MiB; "
          f"healthy at the end: {not any('well-formed' in f for f in report.findings)}")
    for finding in report.findings[:20]:
        print("FINDING", finding)
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
