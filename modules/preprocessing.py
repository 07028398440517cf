"""tf.Transform's preprocessing_fn for babyweight, and the names of what it outputs.

Why tf.Transform: the full-pass statistics (the z-scores' means and variances) are computed once
over the training split and then baked into the exported serving graph with the rest of the
transformation, so training and serving apply the very same one (no training/serving skew).

Transformed features (each shape [batch]); model.py imports these names, never re-spells them:
  <categorical>_xf      int64 id in the declared vocabulary, OOV id = vocabulary size
                        (missing -> missing_value)
  <numeric>_xf          float32 z-score
  <numeric>_bucket_xf   int64 bucket id in [0, len(bucket_boundaries)]
  CROSS_KEY             int64 hash of (mother_age bucket, gestation_weeks bucket) in
                        [0, CROSS_HASH_BUCKETS)
  LABEL_KEY             float32 label, untransformed
"""
from __future__ import annotations

from typing import Dict, Union

import tensorflow as tf
import tensorflow_transform as tft

from modules import features

NUM_OOV_BUCKETS = 1
CROSS_KEY = "mother_age_x_gestation_weeks_xf"
# The transformed label keeps its raw name so TFMA and the Trainer agree on `label_key`.
TRANSFORMED_LABEL_KEY = features.LABEL_KEY
CROSSED_FEATURES = (features.MOTHER_AGE, features.GESTATION_WEEKS)

Tensor = Union[tf.Tensor, tf.SparseTensor, tf.RaggedTensor]


def transformed_name(key: str) -> str:
    """The transformed counterpart of raw feature `key` (z-score or vocabulary id)."""
    return f"{key}_xf"


def bucket_name(key: str) -> str:
    """The bucketized counterpart of numeric feature `key`."""
    return f"{key}_bucket_xf"


def vocabulary_size(feature: features.CategoricalFeature) -> int:
    """Number of ids a categorical feature can take: declared vocabulary plus the OOV ids."""
    return len(feature.vocabulary) + NUM_OOV_BUCKETS


def num_buckets(feature: features.NumericFeature) -> int:
    return len(feature.bucket_boundaries) + 1


def _dense_1d(x: Tensor, default: Union[str, int, float]) -> tf.Tensor:
    """[batch, 1] (dense, sparse or ragged) -> [batch]; absent values become `default`."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(
            tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    elif isinstance(x, tf.RaggedTensor):
        x = x.to_tensor(default_value=default, shape=[None, 1])
    return tf.reshape(x, [-1])


def fill_missing(x: tf.Tensor, feature: features.CategoricalFeature) -> tf.Tensor:
    """Empty (or blank) strings mean "not known": the declared `missing_value`.

    Kept in the graph for the Transform; prediction requests never rely on it for a feature
    that may not be absent (plurality): serving.validation refuses those before the model.
    """
    blank = tf.equal(tf.strings.strip(x), "")
    return tf.where(blank, tf.constant(feature.missing_value or "", tf.string), x)


def _categorical(x: Tensor, feature: features.CategoricalFeature) -> tf.Tensor:
    """Ids in the declared vocabulary's order, not learned from the data.

    Why declared rather than tft.compute_and_apply_vocabulary: the vocabularies are closed and
    already declared (the schema gate stops data with other values), an id then means the same
    value in every run (warm start copies the weights of the last model), and a vocabulary
    analyzer was a third of Transform's time.
    """
    filled = fill_missing(_dense_1d(x, ""), feature)
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(feature.vocabulary)),
            tf.range(len(feature.vocabulary), dtype=tf.int64)),
        num_oov_buckets=NUM_OOV_BUCKETS)
    return table.lookup(filled)


def _bucketize(x: tf.Tensor, feature: features.NumericFeature) -> tf.Tensor:
    """Fixed, declared boundaries: the bucket ids mean the same ages/weeks in every run."""
    boundaries = tf.constant([list(feature.bucket_boundaries)], dtype=tf.float32)
    return tf.cast(tft.apply_buckets(x, boundaries), tf.int64)


def cross_hash(age_bucket: tf.Tensor, weeks_bucket: tf.Tensor) -> tf.Tensor:
    """Hash of the bucket pair; fingerprint-based, so stable across processes and platforms."""
    key = tf.strings.join(
        [tf.strings.as_string(age_bucket), tf.strings.as_string(weeks_bucket)], separator="_")
    return tf.strings.to_hash_bucket_fast(key, features.CROSS_HASH_BUCKETS)


def preprocessing_fn(inputs: Dict[str, Tensor]) -> Dict[str, tf.Tensor]:
    """Raw features ([batch, 1]) -> transformed features ([batch]); see the module docstring."""
    outputs: Dict[str, tf.Tensor] = {}
    for feature in features.CATEGORICAL_FEATURES:
        outputs[transformed_name(feature.name)] = _categorical(inputs[feature.name], feature)
    for feature in features.NUMERIC_FEATURES:
        value = tf.cast(_dense_1d(inputs[feature.name], 0), tf.float32)
        outputs[transformed_name(feature.name)] = tft.scale_to_z_score(value)
        outputs[bucket_name(feature.name)] = _bucketize(value, feature)
    outputs[CROSS_KEY] = cross_hash(*(outputs[bucket_name(f.name)] for f in CROSSED_FEATURES))
    if features.LABEL_KEY in inputs:
        outputs[TRANSFORMED_LABEL_KEY] = tf.cast(
            _dense_1d(inputs[features.LABEL_KEY], 0.0), tf.float32)
    return outputs
