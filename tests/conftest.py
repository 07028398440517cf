"""Shared fixtures: generated warehouses and real pipeline runs, made once per test session."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: F401,E402  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)

import pathlib  # noqa: E402

import pytest  # noqa: E402

from tests import pipeline_helpers  # noqa: E402
from warehouse import generator  # noqa: E402

SMALL_ROWS = 20_000


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A generated natality DuckDB file of SMALL_ROWS rows (seed 7)."""
    database = tmp_path_factory.mktemp("warehouse") / "natality.duckdb"
    generator.generate(database, rows=SMALL_ROWS, seed=7)
    return database


@pytest.fixture(scope="session")
def natality_table(tmp_path_factory: pytest.TempPathFactory):
    """The generator tests' 200k-row table and its report (tests/generator_checks.py)."""
    from tests import generator_checks as checks

    path = tmp_path_factory.mktemp("natality") / "natality.duckdb"
    report = generator.generate(path, rows=checks.ROWS, seed=checks.SEED,
                                chunk_rows=checks.CHUNK_ROWS)
    return path, report


@pytest.fixture(scope="session")
def natality_con(natality_table):
    """A read-only connection to `natality_table`."""
    import duckdb

    connection = duckdb.connect(str(natality_table[0]), read_only=True)
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def pipeline_runs(small_warehouse: pathlib.Path, tmp_path_factory: pytest.TempPathFactory):
    """Three real pipeline runs (see tests/pipeline_run_fixtures.py), shared by the modules that
    read them and never change them."""
    from tests import pipeline_run_fixtures

    return pipeline_run_fixtures.create_pipeline_runs(
        small_warehouse, tmp_path_factory.mktemp("pipeline_runs"))


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items) -> None:
    """A test that reads the pipeline runs waits for them: it is slow, marked or not, so
    `make test-fast` (`-m "not slow"`) never starts them."""
    for item in items:
        if "pipeline_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def pytest_runtest_setup(item) -> None:
    """Lets run_local_pipeline refuse to run a pipeline for a test not marked slow (before the
    test's fixtures are set up: pipeline_runs runs pipelines)."""
    pipeline_helpers.pipeline_runs_allowed = item.get_closest_marker("slow") is not None
