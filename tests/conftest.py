"""Shared fixtures: a small generated warehouse and three pipeline runs on it, made once per
test run (tests/made_once.py: also when pytest-xdist runs the tests in several workers)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: F401,E402  (sets TF_USE_LEGACY_KERAS before any test imports TensorFlow)

import logging  # noqa: E402
import pathlib  # noqa: E402
from typing import Iterator, List  # noqa: E402

import pytest  # noqa: E402

from tests import pipeline_helpers, shared_zygote  # noqa: E402
from tests.made_once import made_once  # noqa: E402

SMALL_ROWS = 20_000


@pytest.fixture(scope="session")
def small_warehouse(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """A generated natality DuckDB file of SMALL_ROWS rows (seed 7); tests open it read-only
    (DuckDB lets several processes do that at once) or copy it."""
    from warehouse import generator  # not at the top: the xdist controller loads this file

    def make(directory: pathlib.Path) -> str:
        generator.generate(directory / "natality.duckdb", rows=SMALL_ROWS, seed=7)
        return str(directory / "natality.duckdb")

    return pathlib.Path(made_once("warehouse", tmp_path_factory, make))


@pytest.fixture(scope="session")
def natality_table(tmp_path_factory: pytest.TempPathFactory):
    """The generator tests' 200k-row table and its report (tests/generator_checks.py)."""
    from tests import generator_checks as checks
    from warehouse import generator

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

    def make(directory: pathlib.Path) -> dict:
        return {"base": str(directory), "exit_codes": pipeline_run_fixtures.create_pipeline_runs(
            small_warehouse, directory).exit_codes}

    made = made_once("pipeline_runs", tmp_path_factory, make)
    return pipeline_run_fixtures.PipelineRuns.at(pathlib.Path(made["base"]), small_warehouse,
                                                 made["exit_codes"])


# The modules with the longest tests, longest first. Under xdist (`make test`: `--dist loadfile
# --no-loadscope-reorder`, whole modules handed out in this order) they start first, so that no
# worker is left running one of them alone at the end. The first ones are all or mostly `slow`;
# `make test-fast` deselects them, and the rest are in the order of the fast set's own costs
# (the first two need different session fixtures: neither worker starts by waiting for the
# other's).
LONGEST_FIRST = (
    # All or mostly slow.
    "test_readme_runs.py", "test_reruns_e2e.py", "test_ct_scenario.py", "test_readme_commands.py",
    "test_pipeline_e2e.py", "test_multi_processing.py", "test_tfma_slicing.py",
    # The fast set's longest. pytest-xdist deals the first modules to the workers in turn, so
    # the modules that need the trained models (tests/model_fixtures.py) alternate with ones
    # that do not: while one worker trains them, the other has work of its own.
    "test_serving_server.py", "test_speedups.py", "test_model.py", "test_batched_reads.py",
    "test_serving_security.py", "test_preprocessing.py", "test_batch_predict.py",
    "test_example_gen.py", "test_serving_versions.py", "test_fingerprints.py",
    "test_serving_benchmark.py", "test_pipeline_definition.py", "test_serving_labels.py",
    "test_preflight.py", "test_prediction_page.py", "test_vertex_runner.py", "test_serving_grpc.py",
    "test_eda_report.py", "test_physical_predictions.py", "test_report_parts.py",
    "test_request_log_server.py", "test_vertex_serving.py", "test_serving_reload.py",
    "test_example_cache.py", "test_serving_ops.py", "test_monitoring_gauges.py")


def pytest_configure(config: pytest.Config) -> None:
    """The run's servers' zygote directory, named before xdist starts its workers
    (tests/shared_zygote.py; nothing is started until a test needs a server)."""
    shared_zygote.configure()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's servers' zygote stopped, once every worker has ended."""
    shared_zygote.unconfigure()


def pytest_itemcollected(item: pytest.Item) -> None:
    """A test that reads the pipeline runs waits for them: it is slow, marked or not, so
    `make test-fast` (`-m "not slow"`) never starts them (marked as collected, before `-m`
    deselects)."""
    if "pipeline_runs" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    """Under xdist the longest modules go first (LONGEST_FIRST); the sort is stable, so each
    module's tests stay together and in order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_runtest_setup(item) -> None:
    """Lets run_local_pipeline refuse to run a pipeline for a test not marked slow (before the
    test's fixtures are set up: pipeline_runs runs pipelines)."""
    pipeline_helpers.pipeline_runs_allowed = item.get_closest_marker("slow") is not None


@pytest.fixture(autouse=True)
def _root_logger_put_back() -> Iterator[None]:
    """An entry point run in-process (`logging.basicConfig(force=True)`) leaves the root logger
    writing to this test's captured stderr, which is closed after the test: a later test's log
    line would then print "--- Logging error ---", and its level would leak into later tests.
    Handlers the test added are removed and the level restored (pytest's own are its business)."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if type(handler) is logging.StreamHandler and handler not in before:
            root.removeHandler(handler)
    root.setLevel(level)
