"""RMSE and MAE as native TFMA metrics that share one fast combiner.

Why not TFMA's MeanSquaredError/MeanAbsoluteError: TFMA runs each metric's combiner once per
example per slice, and its general-purpose label/prediction unpacking
(`metric_util.to_label_prediction_example_weight`, built for multi-class, top-k, sub-keys...)
was most of the Evaluator's time. Here one combiner accumulates the (weighted) sums of absolute
and squared errors, with a direct path for what this model gives (one label, one prediction per
example) and TFMA's general unpacking for anything else; RMSE and MAE are derived from it.
Both are ordinary TFMA metrics: thresholds and baseline comparisons work on them as on any.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.metrics import metric_types, metric_util

ROOT_MEAN_SQUARED_ERROR_NAME = "root_mean_squared_error"
MEAN_ABSOLUTE_ERROR_NAME = "mean_absolute_error"
_ERROR_SUMS_NAME = "_regression_error_sums"


class ErrorSums:
    """Weighted sums of a slice's errors; RMSE and MAE are ratios of them."""

    __slots__ = ("weight", "absolute", "squared")

    def __init__(self, weight: float = 0.0, absolute: float = 0.0, squared: float = 0.0):
        self.weight, self.absolute, self.squared = weight, absolute, squared

    def rmse(self) -> float:
        return math.sqrt(self.squared / self.weight) if self.weight else float("nan")

    def mae(self) -> float:
        return self.absolute / self.weight if self.weight else float("nan")


def _single_value(extracts: Dict[str, Any], key: str, model_name: str, output_name: str
                  ) -> Optional[float]:
    """The float in a one-element array under key[model_name][output_name], else None.

    The same lookup as StandardMetricInputs.get_by_key (a level is skipped when the value is
    not a dict holding that name) without its generality, which cost more than the metric.
    """
    value = extracts.get(key)
    for name in (model_name, output_name):
        if isinstance(value, dict) and name in value:
            value = value[name]
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(-1)[0])
    return None


class _ErrorSumsCombiner(beam.CombineFn):
    """Accumulates weighted absolute and squared errors of one model's one output."""

    def __init__(self, key: metric_types.MetricKey, eval_config: Any,
                 example_weighted: bool) -> None:
        self._key = key
        self._eval_config = eval_config
        self._example_weighted = example_weighted

    def _label_prediction_weights(self, element: metric_types.StandardMetricInputs
                                  ) -> Iterator[Tuple[float, float, float]]:
        if not self._example_weighted and self._key.sub_key is None:
            key = self._key
            extracts = element.extracts
            label = _single_value(extracts, constants.LABELS_KEY, key.model_name,
                                  key.output_name)
            prediction = _single_value(extracts, constants.PREDICTIONS_KEY, key.model_name,
                                       key.output_name)
            if label is not None and prediction is not None:
                yield label, prediction, 1.0
                return
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
        for label, prediction, weight in self._label_prediction_weights(element):
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
            merged.weight += accumulator.weight
            merged.absolute += accumulator.absolute
            merged.squared += accumulator.squared
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


class RootMeanSquaredError(metric_types.Metric):
    """Square root of the (example-weighted) mean squared error between label and prediction."""

    def __init__(self, name: str = ROOT_MEAN_SQUARED_ERROR_NAME, **kwargs: Any):
        # TFMA passes a computations function the arguments its signature names; partial keeps
        # _computations' names (all but the bound first one).
        super().__init__(functools.partial(_computations, ErrorSums.rmse), name=name, **kwargs)


class MeanAbsoluteError(metric_types.Metric):
    """The (example-weighted) mean absolute error between label and prediction."""

    def __init__(self, name: str = MEAN_ABSOLUTE_ERROR_NAME, **kwargs: Any):
        super().__init__(functools.partial(_computations, ErrorSums.mae), name=name, **kwargs)


metric_types.register_metric(RootMeanSquaredError)
metric_types.register_metric(MeanAbsoluteError)
