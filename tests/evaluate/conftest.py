"""One small simulated profile of the paper's AlexNet on sim:jetson-nano, shared by the evaluate tests.

AlexNet needs no torch (the simulator only needs its workload); 48 measurements keep profiling to a few seconds
while still measuring every mapping (with fewer, unmeasured mappings drop out of the table).
"""

from pathlib import Path

import pytest

from governor.evaluate.models import resolve_model
from governor.evaluate.oracle import TrueContention
from governor.evaluate.policies import PolicyContext, baseline_row
from governor.evaluate.replay import ReplaySetup
from governor.evaluate.session import profile_model
from governor.evaluate.traces import resolve

BOARD = "sim:jetson-nano"


@pytest.fixture(scope="session")
def alexnet(tmp_path_factory):
    return resolve_model("alexnet", bundled_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def nano_profile(tmp_path_factory, alexnet):
    cache = tmp_path_factory.mktemp("profiles") / "nano-alexnet.json"
    table, spec, domain_hz = profile_model(BOARD, alexnet, cache=cache, max_points=48, say=lambda _m: None)
    return cache, table, spec, domain_hz


@pytest.fixture(scope="session")
def make_ctx(nano_profile, alexnet):
    """Build the PolicyContext of a trace on the shared profile."""
    _cache, table, spec, domain_hz = nano_profile

    def build(trace):
        row = baseline_row(table.table)
        resolved = resolve(trace, ref_ms=float(table.table.latency_ms[row]), groups=alexnet.meta.groups,
                           accuracy_of=alexnet.meta.accuracy, units=[(u.name, u.kind) for u in spec.units],
                           inference_unit=table.table.points[row].unit)
        return PolicyContext(spec, table, resolved, TrueContention(table.table, spec, resolved.scenario), domain_hz)

    return build


@pytest.fixture(scope="session")
def setup(alexnet):
    return ReplaySetup(BOARD, alexnet.name, alexnet.meta, alexnet.workload)


@pytest.fixture(scope="session")
def profile_cache(nano_profile) -> Path:
    return nano_profile[0]
