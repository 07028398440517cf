"""TFMA configuration for the blessing decision, and reading its results back in plain words.

Thresholds gate the overall slice only: a bound on every slice would block pushes on a
three-example triplets slice. The slices are computed and reported all the same.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants as tfma_constants
from google.protobuf import wrappers_pb2

from modules import contract, features
from modules import preprocessing
from pipelines import tfma_metrics
from pipelines.config import EvaluationConfig

SIGNATURE = contract.SERVING_TF_EXAMPLE
TRANSFORM_SIGNATURE = contract.TRANSFORM_FEATURES
RMSE = tfma_metrics.ROOT_MEAN_SQUARED_ERROR_NAME
MAE = tfma_metrics.MEAN_ABSOLUTE_ERROR_NAME
EXAMPLE_COUNT = tfma_metrics.EXAMPLE_COUNT_NAME
OUTSIDE_LABEL_RANGE = tfma_metrics.OUTSIDE_LABEL_RANGE_NAME
OUTSIDE_LABEL_RANGE_CLASS = tfma_metrics.BatchedPredictionsOutsideLabelRange.__name__
# The class that computes RMSE, as the config names it; earlier runs' configs named TFMA's own.
RMSE_CLASS = tfma_metrics.BatchedRootMeanSquaredError.__name__
RMSE_CLASSES = (RMSE_CLASS, "RootMeanSquaredError")
OVERALL = "Overall"
BASELINE_MODEL = tfma_constants.BASELINE_KEY  # the name TFX's Evaluator gives the baseline

# Slices: the raw categorical features and the bucketized numeric ones (from the Transform
# graph, so the buckets are exactly the model's).
SLICE_FEATURES: Tuple[str, ...] = tuple(f.name for f in features.CATEGORICAL_FEATURES) + tuple(
    preprocessing.bucket_name(f.name) for f in features.NUMERIC_FEATURES)


def eval_config(settings: EvaluationConfig) -> tfma.EvalConfig:
    """RMSE gated on the overall slice (bound and change vs baseline), everything sliced."""
    bound = tfma.GenericValueThreshold(
        upper_bound=wrappers_pb2.DoubleValue(value=settings.rmse_upper_bound))
    overall_threshold = tfma.MetricThreshold(
        value_threshold=bound,
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            absolute=wrappers_pb2.DoubleValue(value=settings.max_rmse_increase)))
    feature_slices = [tfma.SlicingSpec(feature_keys=[name]) for name in SLICE_FEATURES]
    rmse = tfma.MetricConfig(class_name=RMSE_CLASS, module=tfma_metrics.__name__)
    # A plain `threshold` would apply to every slice; per-slice thresholds say which.
    rmse.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()],
                                  threshold=overall_threshold)
    if settings.gate_slices:
        rmse.per_slice_thresholds.add(slicing_specs=feature_slices,
                                      threshold=tfma.MetricThreshold(value_threshold=bound))
    # Not one impossible weight (features.LABEL_RANGE) in the eval split: the overall count
    # is every slice's sum, so gating it gates them all.
    outside = tfma.MetricConfig(class_name=OUTSIDE_LABEL_RANGE_CLASS,
                                module=tfma_metrics.__name__)
    outside.per_slice_thresholds.add(
        slicing_specs=[tfma.SlicingSpec()],
        threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
            upper_bound=wrappers_pb2.DoubleValue(value=0.0))))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            # Loaded with tf.saved_model.load: reviving it as a Keras model is slower and
            # TFMA loads the model in several stages.
            model_type=tfma.TF_GENERIC,
            signature_name=SIGNATURE,
            preprocessing_function_names=[TRANSFORM_SIGNATURE],
            label_key=features.LABEL_KEY,
            prediction_key=features.LABEL_KEY)],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            # One extract may hold many examples (pipelines.speedups.tfma_slicing): these metrics count
            # the examples in it, where TFMA's ExampleCount would count the extract once.
            tfma.MetricConfig(class_name=tfma_metrics.BatchedExampleCount.__name__,
                              module=tfma_metrics.__name__),
            rmse,
            tfma.MetricConfig(class_name=tfma_metrics.BatchedMeanAbsoluteError.__name__,
                              module=tfma_metrics.__name__),
            outside,
        ])],
        slicing_specs=[tfma.SlicingSpec()] + feature_slices)


@dataclasses.dataclass(frozen=True)
class SliceMetrics:
    """One slice's numbers, for the candidate and (when compared) the baseline."""

    slice_name: str
    example_count: float
    rmse: float
    mae: float
    baseline_rmse: Optional[float] = None
    baseline_mae: Optional[float] = None
    outside_label_range: Optional[float] = None  # impossible predictions (None: not computed)


def _slice_name(slice_key: Tuple) -> str:
    if not slice_key:
        return OVERALL
    return ", ".join(f"{raw_feature_name(name)}={slice_label(name, value)}"
                     for name, value in slice_key)


def raw_feature_name(slice_feature: str) -> str:
    """The raw feature a slice column stands for (bucket columns come from the Transform)."""
    for feature in features.NUMERIC_FEATURES:
        if slice_feature == preprocessing.bucket_name(feature.name):
            return feature.name
    return slice_feature


def slice_label(name: str, value: object) -> str:
    """A bucket id as the range of raw values it stands for; other values as they are."""
    for feature in features.NUMERIC_FEATURES:
        if name == preprocessing.bucket_name(feature.name):
            edges = [int(edge) for edge in feature.bucket_boundaries]
            index = int(value)
            low = edges[index - 1] if index > 0 else None
            high = edges[index] if index < len(edges) else None
            if low is None:
                return f"<{high}"
            if high is None:
                return f"{low}+"
            return str(low) if high - 1 == low else f"{low}-{high - 1}"
    return value.decode() if isinstance(value, bytes) else str(value)


def read_metrics(evaluation_uri: str) -> List[SliceMetrics]:
    """Per-slice RMSE, MAE and counts of the candidate (and baseline), overall slice first."""
    out = []
    for record in tfma.load_metrics(evaluation_uri):
        candidate: Dict[str, float] = {}
        baseline: Dict[str, float] = {}
        for entry in record.metric_keys_and_values:
            if entry.key.is_diff:
                continue
            target = baseline if entry.key.model_name == BASELINE_MODEL else candidate
            target[entry.key.name] = entry.value.double_value.value
        slice_key = tfma.slicer.deserialize_slice_key(record.slice_key)
        out.append(SliceMetrics(
            slice_name=_slice_name(slice_key),
            example_count=candidate.get(EXAMPLE_COUNT, 0.0),
            rmse=candidate.get(RMSE, float("nan")),
            mae=candidate.get(MAE, float("nan")),
            baseline_rmse=baseline.get(RMSE),
            baseline_mae=baseline.get(MAE),
            outside_label_range=candidate.get(OUTSIDE_LABEL_RANGE)))
    out.sort(key=lambda m: (m.slice_name != OVERALL, m.slice_name))
    return out


def describe_validation(evaluation_uri: str) -> Tuple[bool, List[str]]:
    """Whether TFMA's thresholds passed, and each failure as metric, value and threshold."""
    result = tfma.load_validation_result(evaluation_uri)
    lines = []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            metric = failure.metric_key.name
            if failure.metric_key.is_diff:
                metric += " change vs the last blessed model"
            threshold = failure.metric_threshold
            bound = ""
            if failure.metric_key.name == OUTSIDE_LABEL_RANGE and not failure.metric_key.is_diff:
                label = features.LABEL_RANGE
                metric = (f"{metric} (eval predictions outside the possible weights "
                          f"{label.min_pounds:.2f}-{label.max_pounds:.2f} lb)")
            if threshold.HasField("value_threshold"):
                vt = threshold.value_threshold
                # TFMA fails a value strictly beyond the bound: the bound itself passes.
                if vt.HasField("upper_bound"):
                    bound = f"must be at most {vt.upper_bound.value:g}"
                elif vt.HasField("lower_bound"):
                    bound = f"must be at least {vt.lower_bound.value:g}"
            elif threshold.HasField("change_threshold"):
                bound = f"may rise at most {threshold.change_threshold.absolute.value:g}"
            lines.append(f"{where}: {metric} = {failure.metric_value.double_value.value:.4f}, "
                         f"{bound}")
    if result.rubber_stamp:
        lines.append("no previously blessed model: judged on the absolute bound alone")
    return result.validation_ok, lines
