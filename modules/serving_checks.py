"""Request checks inside the exported graph: what TF Serving (and a Vertex AI endpoint) enforces.

The local server checks every request against modules/features.py before the model
(serving/validation.py). A SavedModel served by TF Serving has no such server in front of it,
and the Transform graph reads a blank plurality as 'Multiple(2+)', an unknown spelling as an
out-of-vocabulary id, and rounds any number: each would be a prediction for a birth that was
not asked about. So the serving signatures refuse, with an error naming the feature, a
required feature that is blank, a categorical value outside the vocabulary, and a number
outside its declared range (NaN included). TF Serving answers such a request with
INVALID_ARGUMENT (HTTP 400) carrying the message. A feature left out altogether is already
refused: serving_default has no defaults, and the tf.Example signatures parse the required
features without a default value.
"""
from __future__ import annotations

from typing import List, Mapping

import tensorflow as tf

from modules import features


def _categorical_check(feature: features.CategoricalFeature, values: tf.Tensor) -> tf.Operation:
    """Every value in the vocabulary; blank only for a feature that may be absent."""
    values = tf.reshape(values, [-1])
    known = tf.reduce_any(tf.equal(values[:, None], tf.constant(list(feature.vocabulary))),
                          axis=1)
    if not feature.required:  # blank means the declared missing value
        known = tf.logical_or(known, tf.equal(tf.strings.strip(values), ""))
    if feature.required:
        problem = (f"{feature.name} must be one of {', '.join(feature.vocabulary)}: it is "
                   "required, a blank value is refused")
    else:
        problem = (f"{feature.name} must be one of {', '.join(feature.vocabulary)}, or blank "
                   f"for {feature.missing_value}")
    return tf.debugging.Assert(tf.reduce_all(known), [problem], name=f"check_{feature.name}")


def _numeric_check(feature: features.NumericFeature, values: tf.Tensor) -> tf.Operation:
    """Every value inside the declared range; NaN compares false, so it is refused too."""
    values = tf.cast(tf.reshape(values, [-1]), tf.float64)
    inside = tf.logical_and(values >= feature.min_value, values <= feature.max_value)
    return tf.debugging.Assert(
        tf.reduce_all(inside),
        [f"{feature.name} must be a number in {feature.min_value}..{feature.max_value}"],
        name=f"check_{feature.name}")


def request_checks(raw: Mapping[str, tf.Tensor]) -> List[tf.Operation]:
    """One assertion per feature of a request's raw values (any shape holding one per row)."""
    checks = [_categorical_check(f, raw[f.name]) for f in features.CATEGORICAL_FEATURES]
    checks += [_numeric_check(f, raw[f.name]) for f in features.NUMERIC_FEATURES]
    return checks


def checked(raw: Mapping[str, tf.Tensor]) -> dict:
    """`raw` behind its checks: nothing computed from it runs before every check passed."""
    with tf.control_dependencies(request_checks(raw)):
        return {name: tf.identity(value) for name, value in raw.items()}
