"""The exported SavedModel and its signatures (names in modules/contract.py).

  serving_default     raw features by name, each [None]          -> {"weight_pounds": [None]}
  serving_tf_example  serialized tf.Example `examples` [None]    -> {"weight_pounds": [None]}
  transform_features  serialized tf.Example `examples` [None]    -> transformed features

The two prediction signatures (and `regression`, built on serving_tf_example) refuse a request
that is not a possible birth (modules/serving_checks.py): TF Serving has no request validation
of its own.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Dict, Mapping, Optional

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras

from modules import features
from modules import preprocessing as pp
from modules import serving_checks
from modules import signatures as model_signatures
from modules.contract import (EXAMPLES_INPUT, FEATURE_MEANING_FILE, OUTPUT_KEY, SERVING_DEFAULT,
                              SERVING_TF_EXAMPLE, TRAINING_QUERY_FILE, TRAINING_SPLITS_FILE,
                              TRANSFORM_FEATURES)
from modules.network import model_inputs


def raw_serving_specs() -> Dict[str, tf.TensorSpec]:
    """serving_default's inputs: strings for categoricals, float32 for numerics, each [None].

    Floats so a JSON 26 and 26.0 both work; they are rounded to the raw schema's int64 inside.
    """
    specs = {f.name: tf.TensorSpec([None], tf.string, name=f.name)
             for f in features.CATEGORICAL_FEATURES}
    specs.update({f.name: tf.TensorSpec([None], tf.float32, name=f.name)
                  for f in features.NUMERIC_FEATURES})
    return specs


def raw_features_from_request(request: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """serving_default's inputs -> raw features shaped and typed as the raw schema says."""
    raw = {f.name: tf.reshape(request[f.name], [-1, 1]) for f in features.CATEGORICAL_FEATURES}
    raw.update({f.name: tf.reshape(tf.cast(tf.round(request[f.name]), tf.int64), [-1, 1])
                for f in features.NUMERIC_FEATURES})
    return raw


def serving_raw_feature_spec(tf_transform_output: tft.TFTransformOutput) -> Dict[str, Any]:
    """The raw feature spec without the label and the split key, which requests do not carry.

    A required feature (modules/features.py) parses without a default value, so a tf.Example
    that leaves it out is refused by name ("Feature: plurality ... is required"). A feature that
    may be absent parses with its `missing_value` as default, so TF Serving reads a tf.Example
    without it as the local server does (sex left out: 'Unknown'), instead of refusing it
    because the training schema requires the feature in every stored example.
    """
    spec = dict(tf_transform_output.raw_feature_spec())
    for key in (features.LABEL_KEY, features.SPLIT_KEY):
        spec.pop(key, None)
    for feature in features.FEATURES:
        if feature.name not in spec:
            continue
        dtype = spec[feature.name].dtype
        if feature.required:
            # Whatever the schema says: no default, so leaving the feature out is an error.
            spec[feature.name] = tf.io.FixedLenFeature([1], dtype)
        else:
            spec[feature.name] = tf.io.FixedLenFeature([1], dtype,
                                                       default_value=[feature.missing_value])
    return spec


def parsed_raw_specs(raw_spec: Mapping[str, Any]) -> Dict[str, tf.TensorSpec]:
    """What `tf.io.parse_example(examples, raw_spec)` returns: each feature [None, 1]."""
    return {name: tf.TensorSpec([None, *spec.shape], spec.dtype, name=name)
            for name, spec in raw_spec.items()}


def _signatures(model: tf_keras.Model,
                tf_transform_output: tft.TFTransformOutput) -> Dict[str, Callable]:
    # Tracked on the model so the Transform graph and its vocabulary assets are saved with it.
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = serving_raw_feature_spec(tf_transform_output)

    def transform(raw: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = model.tft_layer(dict(raw))
        transformed.pop(pp.TRANSFORMED_LABEL_KEY, None)
        return transformed

    # Transform and the model traced once, and called by both prediction signatures (each
    # would otherwise trace, and the export store, a copy of the whole model's graph).
    # autograph=False: straight-line graph code, nothing for AutoGraph to convert.
    @tf.function(input_signature=[parsed_raw_specs(raw_spec)], autograph=False)
    def predict_raw(raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        prediction = model(model_inputs(model, transform(raw)), training=False)
        return {OUTPUT_KEY: tf.reshape(prediction, [-1])}

    predict = predict_raw.get_concrete_function()

    @tf.function(input_signature=[raw_serving_specs()], autograph=False)
    def serve_raw(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return predict(raw_features_from_request(serving_checks.checked(request)))

    examples_spec = tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)

    @tf.function(input_signature=[examples_spec], autograph=False)
    def serve_tf_example(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        return predict(serving_checks.checked(tf.io.parse_example(examples, raw_spec)))

    @tf.function(input_signature=[examples_spec], autograph=False)
    def transform_features(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        return transform(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_raw.get_concrete_function(),
        SERVING_TF_EXAMPLE: serve_tf_example.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }


def export_serving_model(model: tf_keras.Model, tf_transform_output: tft.TFTransformOutput,
                         serving_model_dir: str, training_query: Optional[str] = None,
                         training_splits: Optional[Mapping[str, Any]] = None) -> None:
    """SavedModel with four signatures (modules/signatures.py adds `regression`); loadable by
    TF Serving and plain tf.saved_model.

    Beside the graph, assets.extra/ (which TF Serving leaves alone) records the features'
    meaning, so a later warm start can tell whether these weights still mean the same, the
    training query, so prediction from the table's own values maps and filters them as the
    training examples were, whatever the query file says by then, and the splits' buckets, so
    scoring "the eval split" later means the rows this version held out.
    """
    signatures = model_signatures.with_regression(_signatures(model, tf_transform_output),
                                                  SERVING_TF_EXAMPLE)
    # save_traces=False: Keras stores each layer's config instead of tracing every layer's call
    # (faster to save, and to load for warm start); the layers are all built-in, so the model
    # revives from their configs, and the signatures above are traced and saved either way.
    model.save(serving_model_dir, save_format="tf", signatures=signatures, save_traces=False)
    model_signatures.mark_regression(serving_model_dir)
    meaning_file = os.path.join(serving_model_dir, FEATURE_MEANING_FILE)
    tf.io.gfile.makedirs(os.path.dirname(meaning_file))
    with tf.io.gfile.GFile(meaning_file, "w") as out:
        out.write(json.dumps(features.meaning(), indent=1, sort_keys=True))
    if training_query is not None:
        with tf.io.gfile.GFile(os.path.join(serving_model_dir, TRAINING_QUERY_FILE), "w") as out:
            out.write(training_query)
    if training_splits is not None:
        with tf.io.gfile.GFile(os.path.join(serving_model_dir, TRAINING_SPLITS_FILE), "w") as out:
            out.write(json.dumps(training_splits, indent=1, sort_keys=True))

