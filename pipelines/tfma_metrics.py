"""RMSE, MAE, example count and impossible predictions as TFMA metrics sharing one combiner.

Why not TFMA's MeanSquaredError/MeanAbsoluteError/ExampleCount: TFMA runs each metric's combiner
once per extract per slice, and its general-purpose label/prediction unpacking
(`metric_util.to_label_prediction_example_weight`, built for multi-class, top-k, sub-keys...)
was most of the Evaluator's time. Here one combiner accumulates the (weighted) sums of absolute
and squared errors and the example count, with a vectorized path for what this model gives (one
label and one prediction per example, as arrays over every example the extract holds) and
TFMA's general unpacking for anything else; the three metrics are derived from it. An extract may
hold many examples: `pipelines.speedups.tfma_slicing` passes one extract per slice and batch, and TFMA's
own ExampleCount would count that extract once. All three are ordinary TFMA metrics: thresholds
and baseline comparisons work on them as on any.

The class names differ from TFMA's (RootMeanSquaredError, MeanAbsoluteError, ExampleCount) on
purpose: TFMA resolves a MetricConfig's class_name in its registry of built-in metrics before it
looks at `module`, so a same-named class would silently be TFMA's own wherever this module had not
been imported yet (as in an Evaluator container). These are not registered, so `module` decides.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types, metric_util

from modules import contract, features

ROOT_MEAN_SQUARED_ERROR_NAME = contract.RMSE_METRIC
MEAN_ABSOLUTE_ERROR_NAME = contract.MAE_METRIC
EXAMPLE_COUNT_NAME = contract.EXAMPLE_COUNT_METRIC
OUTSIDE_LABEL_RANGE_NAME = contract.OUTSIDE_LABEL_RANGE_METRIC
_ERROR_SUMS_NAME = "_regression_error_sums"
# What a prediction must lie in to be physically possible (a NaN lies nowhere).
_LOW, _HIGH = features.LABEL_RANGE.min_pounds, features.LABEL_RANGE.max_pounds


def outside_label_range(predictions: np.ndarray) -> np.ndarray:
    """Which predictions are not a possible weight: below, above the declared range, or NaN."""
    return ~((predictions >= _LOW) & (predictions <= _HIGH))


class ErrorSums:
    """Weighted sums of a slice's errors; RMSE and MAE are ratios of them.

    `examples` counts every example (by weight when weighted); `weight` only those whose error
    is a number, which RMSE and MAE divide by; `outside` those whose prediction lies outside the
    label's declared range (features.LABEL_RANGE).
    """

    __slots__ = ("examples", "weight", "absolute", "squared", "outside")

    def __init__(self, examples: float = 0.0, weight: float = 0.0, absolute: float = 0.0,
                 squared: float = 0.0, outside: float = 0.0):
        self.examples, self.weight = examples, weight
        self.absolute, self.squared = absolute, squared
        self.outside = outside

    def rmse(self) -> float:
        return math.sqrt(self.squared / self.weight) if self.weight else float("nan")

    def mae(self) -> float:
        return self.absolute / self.weight if self.weight else float("nan")

    def example_count(self) -> float:
        return self.examples

    def outside_label_range(self) -> float:
        return self.outside


def _values(extracts: Dict[str, Any], key: str, model_name: str, output_name: str
            ) -> Optional[np.ndarray]:
    """The numbers under key[model_name][output_name] as a flat float array, else None.

    The same lookup as StandardMetricInputs.get_by_key (a level is skipped when the value is
    not a dict holding that name) without its generality, which cost more than the metric.
    """
    value = extracts.get(key)
    for name in (model_name, output_name):
        if isinstance(value, dict) and name in value:
            value = value[name]
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
        return value.reshape(-1).astype(np.float64, copy=False)
    return None


class _ErrorSumsCombiner(beam.CombineFn):
    """Accumulates weighted absolute and squared errors of one model's one output."""

    def __init__(self, key: metric_types.MetricKey, eval_config: Any,
                 example_weighted: bool) -> None:
        self._key = key
        self._eval_config = eval_config
        self._example_weighted = example_weighted

    def _arrays(self, element: metric_types.StandardMetricInputs
                ) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Labels, predictions and weights as equal-length arrays, when that is what they are."""
        if self._key.sub_key is not None:
            return None
        key, extracts = self._key, element.extracts
        labels = _values(extracts, constants.LABELS_KEY, key.model_name, key.output_name)
        predictions = _values(extracts, constants.PREDICTIONS_KEY, key.model_name,
                              key.output_name)
        if labels is None or predictions is None or labels.size != predictions.size:
            return None
        weights = np.ones_like(labels)
        if self._example_weighted:
            given = _values(extracts, constants.EXAMPLE_WEIGHTS_KEY, key.model_name,
                            key.output_name)
            if given is None or given.size not in (1, labels.size):
                return None
            weights = np.broadcast_to(given, labels.shape)
        return labels, predictions, weights

    def _label_prediction_weights(self, element: metric_types.StandardMetricInputs
                                  ) -> Iterator[Tuple[float, float, float]]:
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, sub_key=self._key.sub_key,
                example_weighted=self._example_weighted):
            yield (metric_util.safe_to_scalar(label), metric_util.safe_to_scalar(prediction),
                   metric_util.safe_to_scalar(weight))

    def create_accumulator(self) -> ErrorSums:
        return ErrorSums()

    def add_input(self, accumulator: ErrorSums,
                  element: metric_types.StandardMetricInputs) -> ErrorSums:
        arrays = self._arrays(element)
        if arrays is not None:
            labels, predictions, weights = arrays
            errors = predictions - labels
            known = ~np.isnan(errors)
            errors, known_weights = errors[known], weights[known]
            accumulator.examples += float(weights.sum())
            accumulator.outside += float(weights[outside_label_range(predictions)].sum())
            accumulator.weight += float(known_weights.sum())
            accumulator.absolute += float(known_weights @ np.abs(errors))
            accumulator.squared += float(known_weights @ (errors * errors))
            return accumulator
        for label, prediction, weight in self._label_prediction_weights(element):
            accumulator.examples += weight
            if not _LOW <= prediction <= _HIGH:
                accumulator.outside += weight
            error = prediction - label
            if math.isnan(error):
                continue
            accumulator.weight += weight
            accumulator.absolute += weight * abs(error)
            accumulator.squared += weight * error * error
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[ErrorSums]) -> ErrorSums:
        merged = ErrorSums()
        for accumulator in accumulators:
            merged.examples += accumulator.examples
            merged.weight += accumulator.weight
            merged.absolute += accumulator.absolute
            merged.squared += accumulator.squared
            merged.outside += accumulator.outside
        return merged

    def extract_output(self, accumulator: ErrorSums) -> Dict[metric_types.MetricKey, ErrorSums]:
        return {self._key: accumulator}


def _computations(
    statistic: Callable[[ErrorSums], float],
    name: str,
    eval_config: Any = None,
    model_names: Optional[List[str]] = None,
    output_names: Optional[List[str]] = None,
    sub_keys: Optional[List[Optional[metric_types.SubKey]]] = None,
    example_weighted: bool = False,
) -> metric_types.MetricComputations:
    """The shared sums computation plus one derived metric, per model and output."""
    computations: metric_types.MetricComputations = []
    for model_name in model_names or [""]:
        for output_name in output_names or [""]:
            for sub_key in sub_keys or [None]:
                sums_key = metric_types.MetricKey(
                    name=_ERROR_SUMS_NAME, model_name=model_name, output_name=output_name,
                    sub_key=sub_key, example_weighted=example_weighted)
                key = metric_types.MetricKey(
                    name=name, model_name=model_name, output_name=output_name,
                    sub_key=sub_key, example_weighted=example_weighted)
                computations.append(metric_types.MetricComputation(
                    keys=[sums_key], preprocessors=None,
                    combiner=_ErrorSumsCombiner(sums_key, eval_config, example_weighted)))

                def result(metrics: Dict[metric_types.MetricKey, Any],
                           key: metric_types.MetricKey = key,
                           sums_key: metric_types.MetricKey = sums_key
                           ) -> Dict[metric_types.MetricKey, float]:
                    sums: ErrorSums = metrics[sums_key]
                    return {key: statistic(sums)}

                computations.append(metric_types.DerivedMetricComputation(
                    keys=[key], result=result))
    return computations


class BatchedRootMeanSquaredError(metric_types.Metric):
    """Square root of the (example-weighted) mean squared error between label and prediction."""

    def __init__(self, name: str = ROOT_MEAN_SQUARED_ERROR_NAME, **kwargs: Any):
        # TFMA passes a computations function the arguments its signature names; partial keeps
        # _computations' names (all but the bound first one).
        super().__init__(functools.partial(_computations, ErrorSums.rmse), name=name, **kwargs)


class BatchedMeanAbsoluteError(metric_types.Metric):
    """The (example-weighted) mean absolute error between label and prediction."""

    def __init__(self, name: str = MEAN_ABSOLUTE_ERROR_NAME, **kwargs: Any):
        super().__init__(functools.partial(_computations, ErrorSums.mae), name=name, **kwargs)


class BatchedExampleCount(metric_types.Metric):
    """How many examples the slice has (their total weight when example-weighted)."""

    def __init__(self, name: str = EXAMPLE_COUNT_NAME, **kwargs: Any):
        super().__init__(functools.partial(_computations, ErrorSums.example_count), name=name,
                         **kwargs)



class BatchedPredictionsOutsideLabelRange(metric_types.Metric):
    """How many predictions are not a possible weight (their total weight when weighted).

    Gated at 0 (pipelines.evaluation): a model that predicts a negative weight for anyone in
    the eval split is not blessed, however good its RMSE.
    """

    def __init__(self, name: str = OUTSIDE_LABEL_RANGE_NAME, **kwargs: Any):
        super().__init__(functools.partial(_computations, ErrorSums.outside_label_range),
                         name=name, **kwargs)
