"""The model: the wide-and-deep regressor over Transform's outputs (see modules/model.py)."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import tensorflow as tf
import tf_keras

from modules import features
from modules import layers
from modules import preprocessing as pp
from modules.contract import OUTPUT_KEY
from modules.hparams import HyperParameters

WIDE_OUTPUT_LAYER = "wide_linear"
DEEP_OUTPUT_LAYER = "deep_linear"
RMSE = "rmse"


def id_feature_sizes() -> Dict[str, int]:
    """Every integer id feature the model sees and its number of ids (fixed by features.py)."""
    sizes = {pp.transformed_name(f.name): pp.vocabulary_size(f)
             for f in features.CATEGORICAL_FEATURES}
    sizes.update({pp.bucket_name(f.name): pp.num_buckets(f) for f in features.NUMERIC_FEATURES})
    sizes[pp.CROSS_KEY] = features.CROSS_HASH_BUCKETS
    return sizes


def dense_feature_keys() -> Tuple[str, ...]:
    return tuple(pp.transformed_name(f.name) for f in features.NUMERIC_FEATURES)


# The plurality id's effect is monotone along the declared order (modules.layers.MonotoneOffset),
# per gestation bucket (multiples fall behind more late in pregnancy); no other part sees it.
MONOTONE_KEY = pp.transformed_name(features.PLURALITY.name)
MONOTONE_GROUP_KEY = pp.bucket_name(features.GESTATION_WEEKS.name)
MONOTONE_OUTPUT_LAYER = "plurality_offset"


def build_keras_model(hparams: HyperParameters) -> tf_keras.Model:
    """The wide-and-deep regressor over Transform's outputs (each a [batch] tensor).

    Pre-activation = wide + deep + plurality offset; the output is a sigmoid scaled to the
    label's declared range (features.LABEL_RANGE), so no input gives an impossible weight.
    """
    sizes = id_feature_sizes()
    inputs = {key: tf_keras.Input(shape=(), name=key, dtype=tf.int64) for key in sizes}
    inputs.update({key: tf_keras.Input(shape=(), name=key, dtype=tf.float32)
                   for key in dense_feature_keys()})
    free_ids = {key: size for key, size in sizes.items() if key != MONOTONE_KEY}
    chain = len(features.PLURALITY_ORDER)
    if features.PLURALITY.vocabulary[:chain] != features.PLURALITY_ORDER:
        raise ValueError("plurality's vocabulary must start with features.PLURALITY_ORDER: "
                         "the monotone offset follows the ids in that order")

    one_hots = [tf_keras.layers.CategoryEncoding(size, output_mode="one_hot",
                                                 name=f"{key}_one_hot")(inputs[key])
                for key, size in free_ids.items()]
    wide = tf_keras.layers.Dense(1, name=WIDE_OUTPUT_LAYER)(
        tf_keras.layers.Concatenate(name="wide_inputs")(one_hots))

    deep_parts = [tf_keras.layers.Reshape((1,), name=f"{key}_column")(inputs[key])
                  for key in dense_feature_keys()]
    deep_parts += [tf_keras.layers.Embedding(size, hparams.embedding_dim,
                                             name=f"{key}_embedding")(inputs[key])
                   for key, size in free_ids.items()]
    deep = tf_keras.layers.Concatenate(name="deep_inputs")(deep_parts)
    for index, units in enumerate(hparams.hidden_layer_sizes()):
        deep = tf_keras.layers.Dense(units, activation="relu", name=f"deep_hidden_{index}")(deep)
    deep = tf_keras.layers.Dense(1, name=DEEP_OUTPUT_LAYER)(deep)

    plurality = layers.MonotoneOffset(
        num_ids=sizes[MONOTONE_KEY], chain=chain,
        num_groups=sizes[MONOTONE_GROUP_KEY], name=MONOTONE_OUTPUT_LAYER)(
        [inputs[MONOTONE_KEY], inputs[MONOTONE_GROUP_KEY]])
    logit = tf_keras.layers.Add(name="pre_activation")([wide, deep, plurality])
    output = layers.BoundedOutput(features.LABEL_RANGE.min_pounds,
                                  features.LABEL_RANGE.max_pounds, name=OUTPUT_KEY)(logit)
    model = tf_keras.Model(inputs=inputs, outputs=output, name="babyweight_wide_and_deep")
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=hparams.learning_rate),
        loss=tf_keras.losses.MeanSquaredError(),
        metrics=[tf_keras.metrics.RootMeanSquaredError(name=RMSE)],
    )
    # The optimizer's slots made now, as its first step would make them: a tf.function whose
    # first trace creates variables is traced a second time, so fit() would trace the whole
    # training step twice.
    model.optimizer.build(model.trainable_variables)
    return model


def model_inputs(model: tf_keras.Model, transformed: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """Only the transformed features the model takes (calling it with extras warns)."""
    return {name: transformed[name] for name in model.input_names}



def start_at_label_mean(model: tf_keras.Model, mean: float) -> None:
    """Starts the output at the training labels' mean (the wide bias at its logit).

    A fresh model predicts about 0 lb for babies that weigh about 7: a short run (a Tuner
    trial, a small dataset) would spend its steps climbing to the mean instead of learning
    from the features.
    """
    label = features.LABEL_RANGE
    model.get_layer(WIDE_OUTPUT_LAYER).bias.assign(
        [layers.logit_of(mean, label.min_pounds, label.max_pounds)])
