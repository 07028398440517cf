"""Every prediction is a possible weight, wherever it is served, at every corner of the features;
more babies at once never means heavier ones; and an impossible prediction blocks the push.

The corners: each declared value of every categorical feature x the declared ends of every
numeric one. The bound is the model's own output layer (modules.layers.BoundedOutput), so the
REST server, local predict and batch predict all pass what the model gives, unclipped.
"""
from __future__ import annotations

import io
import itertools
import json
import pathlib
from typing import Any, Dict, List, Sequence

import httpx
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types

from modules import features, layers
from pipelines import evaluation, tfma_metrics
from pipelines.config import EvaluationConfig
from reports import evaluation_results
from serving import batch_predict, local_predict
from tests.serving_fixtures import RunningServer
from tests.test_tfma_metrics import evaluate

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)

LABEL = features.LABEL_RANGE


def corners() -> List[Dict[str, Any]]:
    """Every categorical value x both ends of every numeric range (3 x 6 x 2 x 2 instances)."""
    axes = [[(f.name, v) for v in f.vocabulary] for f in features.CATEGORICAL_FEATURES]
    axes += [[(f.name, f.min_value), (f.name, f.max_value)] for f in features.NUMERIC_FEATURES]
    return [dict(choice) for choice in itertools.product(*axes)]


def assert_possible(predictions: Sequence[float], where: str) -> None:
    impossible = [p for p in predictions if not LABEL.contains(p)]
    assert not impossible, (f"{where}: {len(impossible)} predictions outside "
                            f"{LABEL.min_pounds}-{LABEL.max_pounds} lb: {impossible[:5]}")


def test_corners_are_the_declared_ends() -> None:
    instances = corners()
    assert len(instances) == 3 * 6 * 2 * 2
    assert {i["mother_age"] for i in instances} == {10, 60}
    assert {i["gestation_weeks"] for i in instances} == {17, 47}


def test_label_range_is_what_the_warehouse_writes() -> None:
    from warehouse import calibration

    assert (LABEL.min_grams, LABEL.max_grams) == (calibration.MIN_GRAMS, calibration.MAX_GRAMS)
    assert features.POUNDS_PER_GRAM == calibration.GRAMS_TO_POUNDS


def test_rest_local_and_batch_predictions_are_possible_weights(
        shared_server: RunningServer, tmp_path: pathlib.Path) -> None:
    instances = corners()
    answer = httpx.post(shared_server.predict_url(), json={"instances": instances}, timeout=60)
    assert answer.status_code == 200, answer.text
    rest = answer.json()["predictions"]
    assert len(rest) == len(instances)
    assert_possible(rest, "REST")

    lines = tmp_path / "corners.jsonl"
    lines.write_text("".join(json.dumps(i) + "\n" for i in instances))
    out = io.StringIO()
    model_dir = str(shared_server.model_dir)
    assert local_predict.main(["--model-dir", model_dir, "--json-instances", str(lines)],
                              out=out) == 0
    local = [json.loads(line)[features.LABEL_KEY] for line in out.getvalue().splitlines()]
    assert len(local) == len(instances)
    assert_possible(local, "local predict")

    batch_out = tmp_path / "corners.out.jsonl"
    assert batch_predict.main(["--model-dir", model_dir, "--input", str(lines), "--output",
                               str(batch_out)]) == 0
    records = [json.loads(line) for line in batch_out.read_text().splitlines()]
    assert sorted(r["key"] for r in records) == list(range(len(instances)))
    assert_possible([r[batch_predict.PREDICTION_COLUMN] for r in records], "batch predict")


# ------------------------------------------------------------------------------------------------
# The layers themselves: the guarantees hold for any weights, not just the trained ones
# ------------------------------------------------------------------------------------------------

def test_bounded_output_cannot_leave_the_range() -> None:
    layer = layers.BoundedOutput(LABEL.min_pounds, LABEL.max_pounds)
    z = tf.constant([[-1e30], [-1e4], [-30.0], [0.0], [30.0], [1e4], [1e30]], tf.float32)
    out = layer(z).numpy().astype(np.float64).reshape(-1)
    assert_possible(out.tolist(), "BoundedOutput")
    # Saturated, it reaches the bounds (to float32), so it can express every possible weight.
    assert out[0] == pytest.approx(LABEL.min_pounds, abs=1e-6)
    assert out[-1] == pytest.approx(LABEL.max_pounds, abs=1e-5)
    assert np.all(np.diff(out) >= 0)


def test_monotone_offset_falls_along_the_chain_for_any_weights() -> None:
    chain = len(features.PLURALITY_ORDER)
    num_ids, groups = len(features.PLURALITY.vocabulary) + 1, 4
    layer = layers.MonotoneOffset(num_ids=num_ids, chain=chain, num_groups=groups)
    layer.build(None)
    rng = np.random.default_rng(0)
    for weight in layer.weights:  # arbitrary, large weights of either sign
        weight.assign(rng.normal(0, 5, weight.shape))
    ids = np.repeat(np.arange(num_ids), groups)
    group_ids = np.tile(np.arange(groups), num_ids)
    table = layer([tf.constant(ids), tf.constant(group_ids)]).numpy().reshape(num_ids, groups)
    assert np.all(np.diff(table[:chain], axis=0) < 0)


# ------------------------------------------------------------------------------------------------
# A model trained by the real pipeline on the synthetic warehouse
# ------------------------------------------------------------------------------------------------

def pushed_model(pipeline_runs: Any) -> pathlib.Path:
    versions = sorted((pipeline_runs.base / "serving" / "babyweight").iterdir(),
                      key=lambda p: int(p.name))
    return versions[-1]


def test_more_babies_at_once_never_weigh_more(pipeline_runs: Any) -> None:
    """At the same other inputs: single > twins > triplets > quadruplets > quintuplets.

    The pipeline's model trained on the session's warehouse, where quadruplets and quintuplets
    are as rare as in the real table: a handful of births, too few to learn an order from.
    """
    import duckdb

    with duckdb.connect(str(pipeline_runs.warehouse), read_only=True) as connection:
        total, rare = connection.execute(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE plurality >= 4) FROM natality").fetchone()
    assert rare < total / 1000, "the test's point is thin data for the rare pluralities"

    function = tf.saved_model.load(str(pushed_model(pipeline_runs))).signatures[
        "serving_default"]
    chain = features.PLURALITY_ORDER
    grid = list(itertools.product(features.IS_MALE.vocabulary, (10.0, 20.0, 30.0, 45.0, 60.0),
                                  (17.0, 28.0, 33.0, 37.0, 39.0, 41.0, 47.0)))
    rows = [(sex, plurality, age, weeks) for sex, age, weeks in grid for plurality in chain]
    columns = dict(zip(("is_male", "plurality", "mother_age", "gestation_weeks"), zip(*rows)))
    predictions = function(**{name: tf.constant(values) for name, values in columns.items()})[
        features.LABEL_KEY].numpy().reshape(len(grid), len(chain))
    assert_possible(predictions.reshape(-1).tolist(), "pipeline model")
    inverted = [(grid[i], predictions[i].round(3).tolist())
                for i in range(len(grid)) if not np.all(np.diff(predictions[i]) < 0)]
    assert not inverted, f"heavier with more babies at {inverted[:3]}"


def test_batch_predictions_of_the_warehouse_test_split_are_possible(
        pipeline_runs: Any, tmp_path: pathlib.Path) -> None:
    """Every row of the test split, as `batch_predict --warehouse --split test` reads it."""
    out = tmp_path / "test_split.jsonl"
    # Rows the training query's filters drop (no recorded weight or gestation) are rejected
    # with the filter named; every other row of the split is predicted.
    assert batch_predict.main([
        "--model-dir", str(pushed_model(pipeline_runs).parent), "--warehouse",
        str(pipeline_runs.warehouse), "--split", "test", "--output", str(out),
        "--max-error-rate", "1"]) == 0
    errors = pathlib.Path(str(out) + batch_predict.ERRORS_SUFFIX).read_text().splitlines()
    reasons = {json.loads(line)["error"] for line in errors}
    assert all(r.startswith("fails the training query's filter") for r in reasons), reasons
    predictions = [json.loads(line)[batch_predict.PREDICTION_COLUMN]
                   for line in out.read_text().splitlines()]
    assert len(predictions) > 1000, "the whole test split, not a sample"
    assert_possible(predictions, "batch predict of the test split")


# ------------------------------------------------------------------------------------------------
# The Evaluator's gate
# ------------------------------------------------------------------------------------------------

def _rows(predictions: Sequence[float]) -> List[metric_types.StandardMetricInputs]:
    return [metric_types.StandardMetricInputs({"labels": np.array([7.0]),
                                               "predictions": np.array([p], np.float32),
                                               "example_weights": np.array([1.0])})
            for p in predictions]


def test_impossible_predictions_are_counted_and_block_the_push(tmp_path: pathlib.Path) -> None:
    # The ends as float32 predictions can hold them inside the range (what the model outputs).
    low, high = layers.inward_float32(LABEL.min_pounds, LABEL.max_pounds)
    predictions = [-1.17, -0.21, 7.0, 8.5, LABEL.max_pounds + 1, float("nan"), low, high]
    counted = evaluate(tfma_metrics.BatchedPredictionsOutsideLabelRange(), _rows(predictions),
                       weighted=False)
    assert counted[tfma_metrics.OUTSIDE_LABEL_RANGE_NAME] == 4  # two negative, one above, NaN

    config = evaluation.eval_config(EvaluationConfig())
    key = metric_types.MetricKey(name=tfma_metrics.OUTSIDE_LABEL_RANGE_NAME)

    def failures(outside: float) -> Any:
        # Only this metric is given: TFMA also reports the other gated metrics as missing.
        result = metrics_validator.validate_metrics(((), {key: outside}), config)
        return result, [f for s in result.metric_validations_per_slice for f in s.failures
                        if f.metric_key.name == tfma_metrics.OUTSIDE_LABEL_RANGE_NAME]

    assert failures(0.0)[1] == []
    result, (failure,) = failures(4.0)
    assert not result.validation_ok
    assert failure.metric_value.double_value.value == 4.0

    # The push decision's reasons, read back as the pusher reads them.
    with tf.io.TFRecordWriter(str(tmp_path / "validations.tfrecord")) as writer:
        writer.write(result.SerializeToString())
    blessed, reasons = evaluation_results.describe_validation(str(tmp_path))
    assert not blessed
    assert (f"Overall: {tfma_metrics.OUTSIDE_LABEL_RANGE_NAME} (eval predictions outside the "
            f"possible weights {LABEL.min_pounds:.2f}-{LABEL.max_pounds:.2f} lb) = 4.0000, "
            f"must be at most 0") in reasons


def test_the_gate_is_in_the_evaluators_config() -> None:
    config = evaluation.eval_config(EvaluationConfig())
    gated = [m for spec in config.metrics_specs for m in spec.metrics
             if m.class_name == tfma_metrics.BatchedPredictionsOutsideLabelRange.__name__]
    assert len(gated) == 1 and gated[0].module == tfma_metrics.__name__
    (per_slice,) = gated[0].per_slice_thresholds
    assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
    assert per_slice.threshold.value_threshold.upper_bound.value == 0
