"""Shared fixtures: a small generated warehouse, made once per test session."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pathlib  # noqa: E402

import pytest  # noqa: E402

from warehouse import generator  # noqa: E402

SMALL_ROWS = 20_000


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A generated natality DuckDB file of SMALL_ROWS rows (seed 7)."""
    database = tmp_path_factory.mktemp("warehouse") / "natality.duckdb"
    generator.generate(database, rows=SMALL_ROWS, seed=7)
    return database


@pytest.fixture(scope="session")
def pipeline_runs(small_warehouse: pathlib.Path, tmp_path_factory: pytest.TempPathFactory):
    """Three real pipeline runs (see tests/pipeline_run_fixtures.py), shared by the modules that
    read them and never change them."""
    from tests import pipeline_run_fixtures

    return pipeline_run_fixtures.create_pipeline_runs(
        small_warehouse, tmp_path_factory.mktemp("pipeline_runs"))
