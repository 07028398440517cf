"""The Evaluator's results read back in plain words: per-slice metrics and why a model failed.

The run reports, the notebooks and the pusher's log all read an evaluation this way; the config
that produced it is pipelines/evaluation.py, and the names both sides use are modules/contract.py.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

from modules import contract, features

OVERALL = contract.OVERALL_SLICE


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
    from modules import preprocessing  # imports TensorFlow: only when a slice is named

    for feature in features.NUMERIC_FEATURES:
        if slice_feature == preprocessing.bucket_name(feature.name):
            return feature.name
    return slice_feature


def slice_label(name: str, value: object) -> str:
    """A bucket id as the range of raw values it stands for; other values as they are."""
    from modules import preprocessing  # imports TensorFlow: only when a slice is named

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
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis import constants  # BASELINE_KEY: the Evaluator's baseline

    out = []
    for record in tfma.load_metrics(evaluation_uri):
        candidate: Dict[str, float] = {}
        baseline: Dict[str, float] = {}
        for entry in record.metric_keys_and_values:
            if entry.key.is_diff:
                continue
            target = baseline if entry.key.model_name == constants.BASELINE_KEY else candidate
            target[entry.key.name] = entry.value.double_value.value
        slice_key = tfma.slicer.deserialize_slice_key(record.slice_key)
        out.append(SliceMetrics(
            slice_name=_slice_name(slice_key),
            example_count=candidate.get(contract.EXAMPLE_COUNT_METRIC, 0.0),
            rmse=candidate.get(contract.RMSE_METRIC, float("nan")),
            mae=candidate.get(contract.MAE_METRIC, float("nan")),
            baseline_rmse=baseline.get(contract.RMSE_METRIC),
            baseline_mae=baseline.get(contract.MAE_METRIC),
            outside_label_range=candidate.get(contract.OUTSIDE_LABEL_RANGE_METRIC)))
    out.sort(key=lambda m: (m.slice_name != OVERALL, m.slice_name))
    return out


def _bound(threshold: object) -> str:
    """A failed threshold as the rule it states."""
    if threshold.HasField("value_threshold"):
        vt = threshold.value_threshold
        # TFMA fails a value strictly beyond the bound: the bound itself passes.
        if vt.HasField("upper_bound"):
            return f"must be at most {vt.upper_bound.value:g}"
        if vt.HasField("lower_bound"):
            return f"must be at least {vt.lower_bound.value:g}"
    elif threshold.HasField("change_threshold"):
        return f"may rise at most {threshold.change_threshold.absolute.value:g}"
    return ""


def describe_validation(evaluation_uri: str) -> Tuple[bool, List[str]]:
    """Whether TFMA's thresholds passed, and each failure as metric, value and threshold."""
    import tensorflow_model_analysis as tfma

    result = tfma.load_validation_result(evaluation_uri)
    lines = []
    for per_slice in result.metric_validations_per_slice:
        where = _slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            metric = failure.metric_key.name
            if failure.metric_key.is_diff:
                metric += " change vs the last blessed model"
            if (failure.metric_key.name == contract.OUTSIDE_LABEL_RANGE_METRIC
                    and not failure.metric_key.is_diff):
                label = features.LABEL_RANGE
                metric = (f"{metric} (eval predictions outside the possible weights "
                          f"{label.min_pounds:.2f}-{label.max_pounds:.2f} lb)")
            lines.append(f"{where}: {metric} = {failure.metric_value.double_value.value:.4f}, "
                         f"{_bound(failure.metric_threshold)}")
    if result.rubber_stamp:
        lines.append("no previously blessed model: judged on the absolute bound alone")
    return result.validation_ok, lines
