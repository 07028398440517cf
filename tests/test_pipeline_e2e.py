"""The whole local pipeline on small data: push, no duplicate push, the Tuner, a bad model is not
pushed, warm start continues from the pushed model. The first two runs are the shared runs'
(tests/pipeline_run_fixtures.py); the runs after them go on from copies of those."""
import json
import pathlib

import pytest

from modules import contract
from reports import mlmd
from tests import pipeline_helpers, pipeline_run_fixtures
from tests.tolerances import prediction_abs, rmse_abs_given_predictions_within
from pipelines.config import DataConfig, EvaluationConfig
from pipelines import pipeline
from pipelines.components.serving_pusher import PUSH_RECORD
from warehouse import engine, sql

pytestmark = pytest.mark.slow

TUNED = [*pipeline_helpers.FAST_TRAINING,
                 "--tune", "--tuner-max-trials", "2", "--tuner-train-steps", "20"]


# Trained models score below 0.9 x the label's std (1.18 lb here); a one-step model starts at
# the training labels' mean and stays there, so it scores about the eval labels' std (1.25 lb):
# the bound sits between the two with room on both sides.
RMSE_BOUND = "1.2"


def run(tmp_path: pathlib.Path, warehouse: pathlib.Path, *args: str) -> int:
    return pipeline_helpers.run_local_pipeline(
        tmp_path, "--database", str(warehouse), "--rmse-upper-bound", RMSE_BOUND, *args)


def push_decisions(tmp_path: pathlib.Path):
    return [json.loads(p.read_text()) for p in
            sorted((tmp_path / "reports").glob(f"*/{pipeline.PUSH_REPORT}"))]


def assert_only_whole_versions(serving: pathlib.Path) -> None:
    for entry in serving.iterdir():
        assert entry.name.isdigit(), f"partial or stray entry in the serving dir: {entry}"
        assert (entry / "saved_model.pb").exists() and (entry / PUSH_RECORD).exists()


@pytest.fixture(scope="module")
def label_std(small_warehouse) -> float:
    (std,) = engine.connect(small_warehouse).execute(
        "SELECT STDDEV_POP(weight_pounds) FROM natality WHERE year > 2000").fetchone()
    return std


def test_push_then_no_duplicate_then_bad_model_kept_out(pipeline_runs, small_warehouse, tmp_path,
                                                        label_std):
    """The shared runs' first two (tests/pipeline_run_fixtures.py) are a first run and the same
    run again; a copy of them goes on with a run through the Tuner and a bad model."""
    # 1. The first run: no baseline, judged on the bound alone; blessed and pushed.
    first, second = push_decisions(pipeline_runs.base)
    assert pipeline_runs.exit_codes[:2] == [0, 0]
    assert first["blessed"] and first["pushed"]
    assert first["baseline_rmse"] is None
    assert first["eval_rmse"] < 0.9 * label_std, "the model must beat predicting the mean"

    # 2. Same data, same code: the first model is resolved as baseline, nothing new is pushed.
    # The same model on the same examples, batched as each Evaluator run's adaptive batching
    # chose: the predictions may differ by float32 reordering only.
    same_model = rmse_abs_given_predictions_within(  # the eval split has fewer than 10**6 examples
        prediction_abs(), 10**6, first["eval_rmse"])
    assert second["baseline_rmse"] == pytest.approx(first["eval_rmse"], rel=0, abs=same_model)
    assert not second["pushed"] and second["version"] == first["version"]

    with pipeline_run_fixtures.copy_of(pipeline_runs, tmp_path / "runs") as runs:
        serving = runs.base / "serving" / "babyweight"
        assert [v.name for v in serving.iterdir()] == [str(first["version"])]
        assert_only_whole_versions(serving)
        # The pushed export records the query its examples were read with and their split
        # buckets (batch and local prediction map the table's values by the one, batch
        # prediction's --split cuts by the other: tests/test_training_query.py).
        pushed = serving / str(first["version"])
        assert (pushed / contract.TRAINING_QUERY_FILE).read_text() == sql.base_query()
        assert json.loads((pushed / contract.TRAINING_SPLITS_FILE).read_text()) == \
            DataConfig().split_layout()

        # 3. The Tuner picks the sizes; judged on the bound alone, the model is blessed and
        # pushed as a new version.
        assert run(runs.base, small_warehouse, *TUNED, "--max-rmse-increase", "10") == 0
        assert list((runs.base / "root" / "Tuner" / "best_hyperparameters").glob("*/*"))
        tuned = push_decisions(runs.base)[-1]
        assert tuned["blessed"] and tuned["pushed"] and tuned["version"] != first["version"]
        assert tuned["eval_rmse"] < 0.9 * label_std, "the model must beat predicting the mean"
        versions = sorted(serving.iterdir())
        assert [v.name for v in versions] == sorted([str(first["version"]),
                                                     str(tuned["version"])])
        assert_only_whole_versions(serving)

        # 4. A model trained for one step is not blessed: exit 3, reasons given, the served
        # versions stay.
        assert run(runs.base, small_warehouse, "--epochs", "1", "--train-steps-per-epoch", "1",
                   "--learning-rate", "0.0001") == 3
        bad = push_decisions(runs.base)[-1]
        record = mlmd.list_runs(mlmd.open_store(runs.metadata_path))[0]
        assert not bad["blessed"] and not bad["pushed"]
        assert bad["eval_rmse"] > float(RMSE_BOUND)
        assert any("root_mean_squared_error" in reason and RMSE_BOUND in reason
                   for reason in bad["reasons"]), bad["reasons"]
        assert sorted(serving.iterdir()) == versions
        assert_only_whole_versions(serving)
    assert all(record.component(node).state == "CACHED" for node in pipeline_helpers.DATA_STAGES), (
        "the copy's runs must go on from the shared runs' cached data stages")


def test_warm_start_continues_from_the_pushed_model(pipeline_runs, small_warehouse, tmp_path,
                                                    label_std):
    """A one-step run (which, started cold, is not blessed: see above) warm-started from the
    last blessed model starts from its weights: blessed, about as good, pushed as a new version.
    It goes on from a copy of the shared runs, whose first run trained with FAST_TRAINING on
    this warehouse and pushed (tests/pipeline_run_fixtures.py)."""
    with pipeline_run_fixtures.copy_of(pipeline_runs, tmp_path / "runs") as runs:
        serving = runs.base / "serving" / "babyweight"
        first = push_decisions(runs.base)[0]
        assert first["blessed"] and first["pushed"]
        assert [v.name for v in serving.iterdir()] == [str(first["version"])]
        assert run(runs.base, small_warehouse, "--warm-start", *pipeline_helpers.FAST_TRAINING,
                   "--epochs", "1", "--train-steps-per-epoch", "1",
                   "--learning-rate", "0.0001") == 0
        warm = push_decisions(runs.base)[-1]
        record = mlmd.list_runs(mlmd.open_store(runs.metadata_path))[0]
    assert all(record.component(node).state == "CACHED" for node in pipeline_helpers.DATA_STAGES), (
        "the copy's run must go on from the shared runs' cached data stages")
    assert warm["blessed"] and warm["pushed"]
    # Blessed says it is at most max_rmse_increase worse than the first model; one step at a
    # learning rate of 1e-4 cannot make it better by more than that either.
    assert warm["eval_rmse"] == pytest.approx(first["eval_rmse"], rel=0,
                                              abs=EvaluationConfig().max_rmse_increase)
    assert warm["eval_rmse"] < 0.9 * label_std
    assert sorted(v.name for v in serving.iterdir()) == sorted(
        [str(first["version"]), str(warm["version"])])
    assert_only_whole_versions(serving)
