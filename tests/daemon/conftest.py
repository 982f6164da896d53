"""A small digits model trained once per session (1 epoch per stage: quick, still a real dynamic net)."""

import shutil

import pytest


@pytest.fixture(scope="session")
def quick_model(tmp_path_factory, quick_digits_model):
    path = tmp_path_factory.mktemp("models") / "quick-digits.dgm"
    shutil.copyfile(quick_digits_model, path)  # the shared model of tests/conftest.py, under this name
    return path
