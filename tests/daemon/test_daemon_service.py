"""The daemon loop in-process: real drivers on a fake host tree, a real torch model, the inproc transport."""


import numpy as np
import pytest
from daemon_build import make_daemon, serving
from governor_client import Client, GovernorError

from governor.core import protocol as p
from governor.daemon.backend import HostBackend
from governor.daemon.config import Config
from governor.daemon.tables import host_points, measure_table
from governor.daemon.target import open_target
from governor.drivers.catalogue import load_board
from governor.testing import make_fake_tree


@pytest.fixture
def daemon(tmp_path, quick_model):
    with serving(tmp_path, quick_model) as parts:
        yield parts


def digits_input(meta):
    from sklearn.datasets import load_digits

    images = load_digits().images[:1].astype(np.float32)
    return images.reshape(1, *meta.input_shape)


def test_infer_returns_real_outputs_and_telemetry_fields(daemon):
    d, pair, meta = daemon
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        res = c.infer(digits_input(meta), deadline_ms=5000, objective="max_accuracy")
    assert res.point.k == meta.groups and res.budget_met and not res.simulated
    logits = next(iter(res.outputs.values())) if isinstance(res.outputs, dict) else res.outputs
    assert logits.shape == (1, len(meta.classes))
    assert res.measured.latency_ms > 0 and res.measured.energy_mj is None
    assert d.served == 1


def test_accuracy_floor_and_min_energy_pick_the_smallest_sufficient_k(daemon):
    d, pair, meta = daemon
    accs = [lv.accuracy for lv in meta.levels]
    floor = sorted(accs)[1]
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        advice = c.advise(deadline_ms=5000, min_accuracy=floor)
    assert advice.predicted.accuracy >= floor
    table = d.parts.table.table
    ok = [i for i in range(len(table)) if table.accuracy[i] >= floor]
    cheapest = min(table.energy_mj[i] for i in ok)
    chosen = next(i for i in ok if table.points[i].groups == advice.point.k
                  and table.points[i].threads == advice.point.mapping.threads)
    assert table.energy_mj[chosen] <= cheapest * (1 + d.machine.settings.hysteresis) + 1e-12


def test_bad_requests_get_typed_errors_and_the_daemon_keeps_serving(daemon):
    _d, pair, meta = daemon
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        with pytest.raises(GovernorError) as err:
            c.infer(np.zeros((1, 3, 32, 32), np.float32), deadline_ms=100)
        assert err.value.code == "bad_request" and "takes (N, 1, 8, 8)" in str(err.value)
        with pytest.raises(GovernorError) as err:
            c.infer(digits_input(meta), energy_mj=5)
        assert err.value.code == "bad_request" and "power sensor" in str(err.value)
        with pytest.raises(GovernorError) as err:
            c.infer(digits_input(meta), deadline_ms=1e-3, strict=True)
        assert err.value.code == "infeasible"
        nan = digits_input(meta).copy()
        nan[0, 0, 0, 0] = np.nan
        with pytest.raises(GovernorError):
            c.infer(nan, deadline_ms=100)
        ok = c.infer(digits_input(meta), deadline_ms=5000)
        assert ok.point.k >= 1
        status = c.status()
        assert status.served >= 1 and status.board == "host" and not status.simulated


def test_best_effort_when_infeasible_without_strict(daemon):
    _d, pair, meta = daemon
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        res = c.infer(digits_input(meta), deadline_ms=1e-3)
    assert res.budget_infeasible and not res.budget_met


def test_duplicate_request_id_is_answered_from_cache_not_run_twice(daemon):
    d, pair, meta = daemon
    end = pair.connect()
    req = p.InferRequest(id="dup-1", budget=p.Budget(deadline_ms=5000), tensors=())
    frames = p.encode_request(req, {"x": digits_input(meta)})
    end.send(frames)
    first = end.recv(20000)
    end.send(frames)
    second = end.recv(20000)
    assert first is not None and second is not None
    assert bytes(first[0]) == bytes(second[0])
    assert d.served == 1


def test_profiles_and_reload(daemon):
    _d, pair, meta = daemon
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        prof = c.profiles()
        assert prof.profiles[0].groups == meta.groups and prof.active == "quick"
        reloaded = c.reload()
    # It re-reads nothing, and says so: its reply used to list the model as "loaded" (the client printed
    # "reloaded: quick") while the message said a restart was needed.
    assert reloaded.loaded == () and "reset" in reloaded.message and "restart" in reloaded.message
    from governor_client._format import format_reload

    assert not format_reload(reloaded).startswith("reloaded")


def test_every_message_a_step_takes_off_the_socket_is_answered(tmp_path, quick_model):
    # Two fast clients keep the socket non-empty: a turn ends after _DRAIN_MAX messages, and the one it
    # would fetch next must stay on the socket, not be taken and forgotten (a client then timed out).
    from governor.daemon import service
    from governor.runtime.executor import Executor

    make_fake_tree(load_board("host"), tmp_path)
    target = open_target("host", str(tmp_path))
    executor = Executor(quick_model)
    backend = HostBackend(executor, target.spec)
    meta = executor.meta
    dummy = np.zeros((1, *meta.input_shape), dtype=np.float32)
    points = [pt for pt in host_points(target.spec, meta, 2) if pt.threads == 1]
    table = measure_table(points, lambda pt: (backend.run(dummy, pt).latency_ms, None), meta, reps=3)

    class EndlessClients:
        def __init__(self):
            self.taken, self.answered = [], []

        def recv(self, timeout_ms=None):
            rid = f"r{len(self.taken)}"
            self.taken.append(rid)
            return (b"peer", b""), p.encode_request(p.AdviseRequest(id=rid, budget=p.Budget(deadline_ms=50.0)))

        def send(self, identity, frames):
            self.answered.append(p.decode_reply(frames)[0].id)

        def is_empty(self):
            return False  # never: another client is always waiting

        def publish(self, frames):
            return None

    clients = EndlessClients()
    d = make_daemon(spec=target.spec, board=target.board, backend=backend, meta=meta, model_name="quick",
                    table=table, server=clients, cpu_count=2)
    try:
        for _ in range(3):
            d.step()
        assert len(clients.taken) == 3 * service._DRAIN_MAX
        assert clients.answered == clients.taken
    finally:
        executor.close()
        target.close()


def test_hello_and_profiles_say_what_the_model_takes_and_infer_what_budget_met_compared(daemon):
    # Nothing said the input was raw digits pixels (0..16): a user who divided by 16 saw 31 of 32 correct
    # answers turn into 7; nor that budget_met compares the end-to-end time, not measured.latency_ms.
    from governor_client._format import format_profiles

    _d, pair, meta = daemon
    with Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        hello = c.hello
        prof = c.profiles()
        res = c.infer(digits_input(meta), deadline_ms=5000)
    assert hello.model == "quick" and hello.interface == prof.profiles[0].interface
    (spec,) = hello.interface.inputs
    assert spec.shape == tuple(meta.input_shape) and spec.value_range == (0.0, 16.0) and spec.dtype == "<f4"
    assert np.array_equal(np.float32(spec.mean), np.float32(meta.input_mean))  # sent as the shortest decimal
    assert spec.max_batch >= 1 and "do not normalise" in spec.scale
    (out,) = hello.interface.outputs
    assert out.kind == "logits" and out.classes == tuple(meta.classes)
    assert res.output.shape == (1, len(out.classes))
    assert "raw values 0..16" in format_profiles(prof)
    assert res.total_ms is not None and res.total_ms >= res.measured.latency_ms
    assert res.budget_met == (res.total_ms <= 5000)


def test_a_1_0_client_gets_no_field_it_cannot_read(daemon):
    # A 1.0 decoder refuses unknown fields, so the 1.1 fields go only to requests that say 1.1.
    import json

    _d, pair, meta = daemon
    end = pair.connect()
    for request, tensors in ((p.HelloRequest(id="h"), None), (p.ProfilesRequest(id="p"), None),
                             (p.InferRequest(id="i", budget=p.Budget(deadline_ms=5000)),
                              {"x": digits_input(meta)})):
        end.send(_as_version(request, tensors, "1.0"))
        frames = end.recv(20000)
        header = json.loads(bytes(frames[0]))
        assert not {"interface", "model", "total_ms"} & set(header), header
        assert not any("interface" in info for info in header.get("profiles", []))


def _as_version(request, tensors, version):
    """The request's frames with its header's ``v`` rewritten (the encoder always writes its own)."""
    frames = p.encode_request(request, tensors)
    head = bytes(frames[0]).replace(f'"v":"{p.PROTOCOL_VERSION}"'.encode(), f'"v":"{version}"'.encode(), 1)
    return [head, *frames[1:]]


def test_a_budget_naming_no_objective_gets_the_configured_one(tmp_path, quick_model):
    # [policy] objective = max_accuracy: a budget without objective runs all groups; one naming
    # min_energy (no floor) still gets its own, the cheapest point, which is a smaller k.
    config = Config.model_validate({"policy": {"objective": "max_accuracy"}})
    with serving(tmp_path, quick_model, config) as (_d, pair, meta), \
            Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        default = c.advise(deadline_ms=5000)
        own = c.advise(deadline_ms=5000, objective="min_energy")
    assert default.point.k == meta.groups
    assert own.point.k < meta.groups


def test_telemetry_nobody_subscribes_to_is_not_built_and_seq_counts_what_went_out(tmp_path, quick_model):
    import time

    published, wanted, asked = [], {"inference"}, []

    def wants(topic):
        asked.append(topic)
        return topic in wanted

    def until(condition):
        end = time.monotonic() + 10
        while not condition() and time.monotonic() < end:
            time.sleep(0.005)

    with serving(tmp_path, quick_model, telemetry=lambda frames: published.append(p.decode_telemetry(frames)),
                 telemetry_wanted=wants) as (_d, pair, meta), \
            Client(transport=pair.connect(), timeout_ms=20000, retries=0) as c:
        first = c.infer(digits_input(meta), deadline_ms=5000)
        until(lambda: len(published) == 1)  # telemetry goes out after the reply
        wanted.clear()
        c.infer(digits_input(meta), deadline_ms=5000)
        until(lambda: asked.count("inference") == 2)
        wanted.add("inference")
        third = c.infer(digits_input(meta), deadline_ms=5000)
        until(lambda: len(published) == 2)
    assert [m.type for m in published] == ["inference", "inference"]  # no observation: nobody asked for one
    assert [m.id for m in published] == [first.request_id, third.request_id]
    assert [m.seq for m in published] == [0, 1]  # a gap would tell a subscriber it missed one
    assert "observation" in asked
