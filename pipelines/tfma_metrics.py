"""RMSE as a native TFMA metric.

TFMA has no RMSE of its own, and asking for Keras's RootMeanSquaredError makes TFMA run a Keras
metric per slice per batch, which was most of the Evaluator's time. This derives RMSE from
TFMA's native MeanSquaredError combiner (the square root of the slice's MSE), so change
thresholds against the baseline work on it like on any TFMA metric.
"""
import math
from typing import Any, Dict, List, Optional

from tensorflow_model_analysis.metrics import mean_regression_error, metric_types, metric_util

ROOT_MEAN_SQUARED_ERROR_NAME = "root_mean_squared_error"


class RootMeanSquaredError(metric_types.Metric):
    """Square root of the (example-weighted) mean squared error between label and prediction."""

    def __init__(self, name: str = ROOT_MEAN_SQUARED_ERROR_NAME, **kwargs: Any):
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         **kwargs)


def _computations(
    name: Optional[str] = None,
    eval_config: Any = None,
    model_name: Optional[str] = None,
    output_name: Optional[str] = None,
    example_weighted: bool = False,
    sub_key: Optional[metric_types.SubKey] = None,
    aggregation_type: Optional[metric_types.AggregationType] = None,
    class_weights: Optional[Dict[int, float]] = None,
    preprocessors: Optional[List[metric_types.Preprocessor]] = None,
) -> metric_types.MetricComputations:
    # TFMA's own MSE computation, so RMSE shares its combiner (a private function, hence the name).
    mse = mean_regression_error._mean_squared_error_computations(  # noqa: SLF001
        name=mean_regression_error.MEAN_SQUARED_ERROR_NAME, eval_config=eval_config,
        model_name=model_name, output_name=output_name, example_weighted=example_weighted,
        sub_key=sub_key, aggregation_type=aggregation_type, class_weights=class_weights,
        preprocessors=preprocessors)
    (mse_key,) = mse[0].keys
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)

    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
        return {key: math.sqrt(metrics[mse_key])}

    return mse + [metric_types.DerivedMetricComputation(keys=[key], result=result)]


metric_types.register_metric(RootMeanSquaredError)
