"""The eval split's predictions, recomputed at report time from a run's own artifacts.

Why at report time and not in the Evaluator: TFMA keeps only aggregates, and the views an
analyst checks first (intervals, calibration, residuals) need one prediction per example with
its month. Re-running the saved model over the eval split is cheap next to the Evaluator, reads
only what the run wrote, and cannot change the run's outcome: a failure is a note on the page.
The slice of each example is taken from the model's own `transform_features` signature, so the
slices are exactly the ones TFMA computed.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np

from modules import contract, features
from reports.evaluation_results import slice_label

EXAMPLE_GEN_NODES = ("DuckDBExampleGen", "BigQueryExampleGen")
EVAL_SPLIT = "eval"
SERVING_FORMAT_DIR = "Format-Serving"  # where TFX's Trainer writes the serving SavedModel
BATCH = 2048


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Per eval example: label, the candidate's (and baseline's) prediction, month, slices."""

    label: np.ndarray
    candidate: np.ndarray
    baseline: Optional[np.ndarray]
    month: np.ndarray  # the split key (one value per year and month)
    slices: Dict[str, np.ndarray]  # raw feature name -> the slice label of each example
    gestation_weeks: np.ndarray  # raw weeks (NaN where missing), for the residual view

    def __len__(self) -> int:
        return int(self.label.shape[0])


def serving_dir(model_uri: str) -> str:
    """The SavedModel directory of a Trainer model artifact (or the directory itself)."""
    nested = os.path.join(model_uri, SERVING_FORMAT_DIR)
    return nested if os.path.isdir(nested) else model_uri


def eval_files(examples_uri: str) -> List[str]:
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{EVAL_SPLIT}", "*")))
    if not files:
        raise FileNotFoundError(f"no eval examples under {examples_uri}")
    return files


def _raw_spec() -> Dict[str, object]:
    import tensorflow as tf

    spec = {f.name: tf.io.VarLenFeature(tf.string) for f in features.CATEGORICAL_FEATURES}
    spec.update({f.name: tf.io.VarLenFeature(tf.int64) for f in features.NUMERIC_FEATURES})
    spec[features.LABEL_KEY] = tf.io.VarLenFeature(tf.float32)
    spec[features.SPLIT_KEY] = tf.io.VarLenFeature(tf.int64)
    return spec


def _first(sparse, default) -> np.ndarray:
    """A [batch, 1] sparse column as a [batch] array; absent values become `default`."""
    import tensorflow as tf

    dense = tf.sparse.to_dense(tf.sparse.reset_shape(sparse, [sparse.dense_shape[0], 1]),
                               default_value=default)
    return dense.numpy().reshape(-1)


def _slice_labels(transformed: Dict[str, object], raw: Dict[str, np.ndarray]
                  ) -> Dict[str, np.ndarray]:
    """Each example's slice label per feature, spelled as `reports.evaluation_results` names them."""
    from modules import preprocessing  # imports TensorFlow: only when a run page is built

    labels = {}
    for feature in features.CATEGORICAL_FEATURES:
        labels[feature.name] = np.array([v.decode() for v in raw[feature.name]], dtype=object)
    for feature in features.NUMERIC_FEATURES:
        column = preprocessing.bucket_name(feature.name)
        ids = np.asarray(transformed[column]).reshape(-1)
        labels[feature.name] = np.array([slice_label(column, int(i)) for i in ids],
                                        dtype=object)
    return labels


def compute(examples_uri: str, model_uri: str, baseline_uri: Optional[str] = None
            ) -> Predictions:
    """Predictions of the candidate (and baseline) on every eval example, in file order."""
    import tensorflow as tf

    candidate = tf.saved_model.load(serving_dir(model_uri))
    baseline = tf.saved_model.load(serving_dir(baseline_uri)) if baseline_uri else None
    predict = candidate.signatures[contract.SERVING_TF_EXAMPLE]
    transform = candidate.signatures[contract.TRANSFORM_FEATURES]
    spec = _raw_spec()
    parts: Dict[str, List[np.ndarray]] = {}

    def keep(name: str, values: np.ndarray) -> None:
        parts.setdefault(name, []).append(values)

    dataset = tf.data.TFRecordDataset(eval_files(examples_uri), compression_type="GZIP")
    for batch in dataset.batch(BATCH):
        parsed = tf.io.parse_example(batch, spec)
        label = _first(parsed[features.LABEL_KEY], np.nan)
        keep("label", label.astype(np.float64))
        keep("candidate", predict(examples=batch)[features.LABEL_KEY].numpy().reshape(-1))
        if baseline is not None:
            keep("baseline", baseline.signatures[contract.SERVING_TF_EXAMPLE](examples=batch)[
                features.LABEL_KEY].numpy().reshape(-1))
        keep("month", _first(parsed[features.SPLIT_KEY], 0))
        raw = {f.name: _first(parsed[f.name], b"") for f in features.CATEGORICAL_FEATURES}
        for name, labels in _slice_labels(transform(examples=batch), raw).items():
            keep(f"slice:{name}", labels)
        weeks = _first(parsed[features.GESTATION_WEEKS.name], -1).astype(np.float64)
        keep("weeks", np.where(weeks < 0, np.nan, weeks))
    if "label" not in parts:
        raise ValueError(f"the eval split under {examples_uri} holds no examples")
    joined = {name: np.concatenate(values) for name, values in parts.items()}
    return Predictions(
        label=joined["label"], candidate=joined["candidate"].astype(np.float64),
        baseline=joined["baseline"].astype(np.float64) if "baseline" in joined else None,
        month=joined["month"],
        slices={f.name: joined[f"slice:{f.name}"] for f in features.FEATURES},
        gestation_weeks=joined["weeks"])
