"""Request ids are the client's: a resend is answered once, anything else under a used id is its own request.

Replies used to be remembered by id alone, across all clients, and queued requests were keyed by the
client's id (or ``anon-<n>`` without one): two clients using id "1" got the first one's output, a
queued request whose id another client reused was never answered, and a client sending id "anon-2"
crashed the daemon with a KeyError.
"""

import numpy as np
import pytest
from daemon_build import make_daemon

from governor.core import protocol as p
from governor.daemon.backend import SimBackend
from governor.daemon.profiling import board_table
from governor.daemon.target import open_target
from governor.sim import SimExecutor, workload_from_meta


class Socket:
    """A transport whose socket holds what the test put there; records every reply and where it went."""

    def __init__(self):
        self.waiting, self.sent = [], []

    def recv(self, timeout_ms):
        return self.waiting.pop(0) if self.waiting else None

    def send(self, identity, frames):
        reply, tensors = p.decode_reply([memoryview(bytes(f)) for f in frames])
        self.sent.append((identity, reply, {k: np.array(v) for k, v in tensors.items()}))

    def publish(self, frames):
        pass

    def is_empty(self):
        return not self.waiting

    def put(self, identity, frames):
        self.waiting.append((identity, [memoryview(bytes(f)) for f in frames]))

    def replies_to(self, identity):
        return [(reply, tensors) for ident, reply, tensors in self.sent if ident == identity]


@pytest.fixture(scope="module")
def nano(quick_model):
    from governor.runtime.executor import Executor

    target = open_target("sim:jetson-nano", clock="virtual")
    executor = Executor(quick_model, warmup_runs=0)
    meta = executor.meta
    sim = SimExecutor(target.sim, workload_from_meta(meta))
    # The table is measured without outputs (fast); the daemon's runs compute real ones, to compare.
    table = board_table(target, SimBackend(sim, None, len(meta.classes)), meta, say=lambda _: None, max_points=24)
    backend = SimBackend(sim, executor, len(meta.classes))
    yield target, backend, meta, table, executor
    executor.close()
    target.close()


@pytest.fixture
def daemon(nano):
    target, backend, meta, table, _ = nano
    socket = Socket()
    d = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="m",
                    table=table, server=socket, clock=target.sim.clock, simulated=True, max_queue=4)
    return d, socket


def infer(request_id, x, deadline_ms=500.0):
    return p.encode_request(p.InferRequest(id=request_id, budget=p.Budget(deadline_ms=deadline_ms)), {"x": x})


def inputs(meta, n):
    rng = np.random.default_rng(7)
    return [rng.uniform(0, 16, size=(1, *meta.input_shape)).astype(np.float32) for _ in range(n)]


def expected(nano, x, reply):
    *_, executor = nano
    return executor.run(x, reply.point.k).outputs


def steps(d, n=6):
    for _ in range(n):
        d.step()


def test_two_clients_with_the_same_id_each_get_their_own_output(nano, daemon):
    d, socket = daemon
    a, b = inputs(nano[2], 2)
    socket.put(b"alice", infer("1", a))
    steps(d)
    socket.put(b"bob", infer("1", b))
    steps(d)
    (ra, ta), = socket.replies_to(b"alice")
    (rb, tb), = socket.replies_to(b"bob")
    assert ra.type == rb.type == "infer" and d.served == 2
    np.testing.assert_allclose(ta["output"], expected(nano, a, ra), rtol=1e-5)
    np.testing.assert_allclose(tb["output"], expected(nano, b, rb), rtol=1e-5)
    assert not np.allclose(ta["output"], tb["output"])


def test_a_queued_request_whose_id_another_client_reuses_is_still_answered(nano, daemon):
    d, socket = daemon
    a, b = inputs(nano[2], 2)
    socket.put(b"alice", infer("job", a))
    socket.put(b"bob", infer("job", b))  # both wait on the socket: queued side by side
    steps(d)
    (ra, ta), = socket.replies_to(b"alice")
    (rb, tb), = socket.replies_to(b"bob")
    assert d.served == 2
    np.testing.assert_allclose(ta["output"], expected(nano, a, ra), rtol=1e-5)
    np.testing.assert_allclose(tb["output"], expected(nano, b, rb), rtol=1e-5)


def test_a_resend_runs_once_and_every_socket_that_asked_gets_the_reply(nano, daemon):
    d, socket = daemon
    (a,) = inputs(nano[2], 1)
    frames = infer("retry-1", a)
    socket.put(b"first-socket", frames)
    socket.put(b"second-socket", frames)  # the lazy-pirate resend, from a new socket, while queued
    steps(d)
    assert d.served == 1
    first, second = socket.replies_to(b"first-socket"), socket.replies_to(b"second-socket")
    assert len(first) == len(second) == 1 and first[0][0] == second[0][0]
    socket.put(b"third-socket", frames)  # once more after the reply: answered from memory
    steps(d, 2)
    assert d.served == 1 and socket.replies_to(b"third-socket")[0][0] == first[0][0]


def test_ids_that_look_like_internal_keys_cannot_collide(nano, daemon):
    d, socket = daemon
    x, y, z = inputs(nano[2], 3)
    socket.put(b"c0", infer("", x))
    socket.put(b"c1", infer("anon-0", y))
    socket.put(b"c2", infer("anon-1", z))
    socket.put(b"c3", infer("", z))
    steps(d, 8)
    assert d.served == 4
    assert [len(socket.replies_to(c)) for c in (b"c0", b"c1", b"c2", b"c3")] == [1, 1, 1, 1]
    assert all(r.type == "infer" for _, r, _ in socket.sent)


def test_an_id_read_off_telemetry_does_not_get_the_other_clients_output(nano, daemon):
    d, socket = daemon
    secret, mine = inputs(nano[2], 2)
    socket.put(b"victim", infer("v-42", secret))
    steps(d)
    socket.put(b"eavesdropper", infer("v-42", mine))  # the id is public (telemetry), the inputs are not
    steps(d)
    (_, tv), = socket.replies_to(b"victim")
    (re, te), = socket.replies_to(b"eavesdropper")
    assert d.served == 2
    np.testing.assert_allclose(te["output"], expected(nano, mine, re), rtol=1e-5)
    assert not np.allclose(te["output"], tv["output"])


def test_a_full_queue_is_not_remembered_so_the_same_request_is_tried_again(nano, daemon):
    d, socket = daemon
    xs = inputs(nano[2], 5)
    for i, x in enumerate(xs):
        socket.put(f"c{i}".encode(), infer(f"q{i}", x))
    d._drain(0)  # all five taken before any run: the fifth finds the queue (max 4) full
    (refused, _), = socket.replies_to(b"c4")
    assert refused.type == "error" and refused.code == "unavailable"
    steps(d, 6)
    socket.put(b"c4", infer("q4", xs[4]))  # the client retries the very same request
    steps(d, 3)
    assert [r.type for r, _ in socket.replies_to(b"c4")] == ["error", "infer"] and d.served == 5
