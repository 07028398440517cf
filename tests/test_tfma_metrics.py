"""The pipeline's RMSE and MAE agree with TFMA's own MeanSquaredError and MeanAbsoluteError."""
from __future__ import annotations

import math
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from pipelines import tfma_metrics
from tests.tolerances import EPS64, gamma, rms_rel


def inputs(weighted: bool) -> List[metric_types.StandardMetricInputs]:
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(200):
        row: Dict[str, Any] = {"labels": np.array([rng.normal(7.3, 1.2)]),
                               "predictions": np.array([rng.normal(7.3, 0.6)], np.float32)}
        row["example_weights"] = np.array([rng.uniform(0.5, 2.0) if weighted else 1.0])
        rows.append(metric_types.StandardMetricInputs(row))
    return rows


def evaluate(metric: metric_types.Metric, rows: List[metric_types.StandardMetricInputs],
             weighted: bool, parts: int = 1) -> Dict[str, float]:
    """Runs a metric's combiners and derived computations by hand, as TFMA's evaluator does.

    With `parts` > 1 the rows go to that many accumulators, merged at the end, as Beam may do.
    """
    values: Dict[metric_types.MetricKey, Any] = {}
    computations = metric.computations(eval_config=tfma.EvalConfig(), model_names=[""],
                                       output_names=[""], example_weighted=weighted)
    for computation in computations:
        if isinstance(computation, metric_types.MetricComputation):
            combiner = computation.combiner
            accumulators = [combiner.create_accumulator() for _ in range(parts)]
            for index, row in enumerate(rows):
                accumulators[index % parts] = combiner.add_input(accumulators[index % parts], row)
            accumulator = (accumulators[0] if parts == 1
                           else combiner.merge_accumulators(iter(accumulators)))
            values.update(combiner.extract_output(accumulator))
        else:
            values.update(computation.result(values))
    return {key.name: value for key, value in values.items() if isinstance(value, float)}


@pytest.mark.parametrize("weighted", [False, True], ids=["direct path", "TFMA unpacking"])
def test_rmse_and_mae_match_tfma(weighted: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = inputs(weighted)
    with monkeypatch.context() as patch:
        if not weighted:  # one label, one prediction: TFMA's unpacking must not be needed
            patch.setattr(tfma_metrics.metric_util, "to_label_prediction_example_weight",
                          lambda *args, **kwargs: pytest.fail("took the general path"))
        ours = {**evaluate(tfma_metrics.BatchedRootMeanSquaredError(), rows, weighted),
                **evaluate(tfma_metrics.BatchedMeanAbsoluteError(), rows, weighted)}
    theirs = {**evaluate(tfma.metrics.MeanSquaredError(), rows, weighted),
              **evaluate(tfma.metrics.MeanAbsoluteError(), rows, weighted)}
    # Both sum the same float64 errors (times weights: one rounding more) in their own order.
    bound = rms_rel(len(rows), EPS64) + 2 * gamma(1, EPS64)
    assert ours[tfma_metrics.ROOT_MEAN_SQUARED_ERROR_NAME] == pytest.approx(
        math.sqrt(theirs["mean_squared_error"]), rel=bound)
    assert ours[tfma_metrics.MEAN_ABSOLUTE_ERROR_NAME] == pytest.approx(
        theirs["mean_absolute_error"], rel=bound)


def test_merged_accumulators_give_the_same_result() -> None:
    rows = inputs(weighted=False)
    for metric in (tfma_metrics.BatchedRootMeanSquaredError(), tfma_metrics.BatchedMeanAbsoluteError()):
        whole = evaluate(metric, rows, weighted=False)
        merged = evaluate(metric, rows, weighted=False, parts=3)
        # Three partial sums added up: another order of the same float64 terms.
        assert merged == pytest.approx(whole, rel=rms_rel(len(rows), EPS64))


def test_both_metrics_share_one_combiner() -> None:
    """TFMA de-duplicates identical computations: one pass per example serves RMSE and MAE."""
    config = dict(eval_config=tfma.EvalConfig(), model_names=[""], output_names=[""])
    combined = (tfma_metrics.BatchedRootMeanSquaredError().computations(**config)
                + tfma_metrics.BatchedMeanAbsoluteError().computations(**config))
    combiners = {c for c in combined if isinstance(c, metric_types.MetricComputation)}
    assert len(combiners) == 1


def test_an_empty_slice_is_nan_not_an_error() -> None:
    assert math.isnan(tfma_metrics.ErrorSums().rmse())
    assert math.isnan(tfma_metrics.ErrorSums().mae())
