"""Running the local pipeline in tests: every output under one temporary directory."""
import pathlib

import local_runner

# Small and quick, yet the model still clearly beats predicting the mean.
FAST_TRAINING = ("--epochs", "2", "--batch-size", "256", "--hidden-units", "16,8")

# The steps before the model: what a run on the same data finds in the cache.
DATA_STAGES = ("DuckDBExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
               "Transform")

# Set by tests/conftest.py for each test: False in a test not marked slow.
pipeline_runs_allowed = True


def run_local_pipeline(base: pathlib.Path, *args: str) -> int:
    """local_runner's exit code for a run with its root, metadata, reports and serving in base."""
    if not pipeline_runs_allowed:
        raise RuntimeError("a pipeline run in a test not marked slow: mark it @pytest.mark.slow "
                           "so that `make test-fast` leaves it out")
    return _main(base, *args)


def run_local_runner_refusing(base: pathlib.Path, *args: str) -> int:
    """local_runner's exit code for flags or data it refuses before any component runs.

    Allowed in fast tests: the check that no pipeline root was made keeps it honest.
    """
    code = _main(base, *args)
    assert not (base / "root").exists(), "the runner started the pipeline"
    return code


def _main(base: pathlib.Path, *args: str) -> int:
    return local_runner.main([
        "--pipeline-root", str(base / "root"),
        "--metadata-path", str(base / "metadata.sqlite"),
        "--reports-dir", str(base / "reports"),
        "--serving-dir", str(base / "serving" / "babyweight"),
        *args,
    ])
