"""Fixtures of the profiling tests: single-threaded BLAS (the fits are many tiny problems)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def _single_blas_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield
