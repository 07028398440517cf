"""TFMA configuration for the blessing decision.

Its results are read back in plain words by reports/evaluation_results.py; the metric, class and
slice names both sides spell are modules/contract.py.

Thresholds gate the overall slice only: a bound on every slice would block pushes on a
three-example triplets slice. The slices are computed and reported all the same.
"""
from __future__ import annotations

from typing import Tuple

import tensorflow_model_analysis as tfma
from google.protobuf import wrappers_pb2

from modules import contract, features
from modules import preprocessing
from pipelines import tfma_metrics
from pipelines.config import EvaluationConfig

SIGNATURE = contract.SERVING_TF_EXAMPLE
TRANSFORM_SIGNATURE = contract.TRANSFORM_FEATURES
# The config names its metric classes by the contract's strings; a renamed class fails here.
RMSE_CLASS = getattr(tfma_metrics, contract.RMSE_CLASS).__name__
OUTSIDE_LABEL_RANGE_CLASS = getattr(tfma_metrics, contract.OUTSIDE_LABEL_RANGE_CLASS).__name__

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
