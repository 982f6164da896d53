"""Session-wide fixtures shared by several test directories.

``quick_digits_model``: the small digits model that the daemon and reliability tests serve (resnet-small,
G = 4, width 0.5, 1 epoch per stage: a few seconds, still a real dynamic net). Each directory used to
train its own copy of the same configuration; it is trained once per session now, and each copies the
file under the name its profile caches are keyed by.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.fuzz_daemon import train_quick_model

    return train_quick_model(tmp_path_factory.mktemp("quick-model") / "quick.dgm")
