"""The babyweight wide-and-deep regressor and the functions TFX's Trainer and Tuner call.

Keras flavour: tf_keras (Keras 2), imported as `tf_keras`. Why: tf.Transform 1.16's
`transform_features_layer()` is a tf_keras layer and TFX 1.16 / TFMA 0.47 expect tf_keras
SavedModels; mixing it with Keras 3 objects fails. `TF_USE_LEGACY_KERAS=1` (set by
`modules/__init__.py` and the Makefile) makes TFT pick tf_keras too. Keras 3 is still installed
(KerasTuner pulls it), which is why the tuner below is a BaseTuner, not keras_tuner.RandomSearch.

The course's DNNLinearCombinedRegressor, rebuilt from layers, with two guarantees built in:
  wide: one-hot of every id feature but plurality (sex, age/week buckets, their cross) -> linear
  deep: z-scored age and weeks + embeddings of the same ids -> ReLU layers -> linear
  plurality: an offset per (plurality, gestation bucket) that falls with every extra baby by
        construction (modules.layers.MonotoneOffset); the unknown count sits outside the chain
  output: wide + deep + plurality through a sigmoid scaled to the label's declared range
        (modules.layers.BoundedOutput), trained with MSE, reported as RMSE ("rmse").

Exported signatures (see `export_serving_model`):
  serving_default     raw features by name, each [None]          -> {"weight_pounds": [None]}
  serving_tf_example  serialized tf.Example `examples` [None]    -> {"weight_pounds": [None]}
  transform_features  serialized tf.Example `examples` [None]    -> transformed features
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import keras_tuner  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
import tf_keras  # noqa: E402
# Direct imports: `from tfx import v1` costs ~18 s per process (the Vertex extension included).
from tfx.components.trainer.fn_args_utils import FnArgs  # noqa: E402
from tfx.components.tuner.component import TunerFnResult  # noqa: E402

from modules import features  # noqa: E402
from modules import layers  # noqa: E402
from modules import preprocessing as pp  # noqa: E402
from modules import records  # noqa: E402
from modules import training_log  # noqa: E402
from modules.hparams import HyperParameters, from_keras_tuner, search_space  # noqa: E402

LOGGER = logging.getLogger("babyweight.model")  # shown by pipelines/logs.py


def _skip_autograph_for_graph_libraries(prefixes: Tuple[str, ...] = (
        "tf_keras", "tensorflow_transform")) -> None:
    """Tells AutoGraph not to convert tf_keras' and tf.Transform's own code.

    TF 2.16's AutoGraph exempts modules named `keras*` and `tensorflow.*` but not `tf_keras*`
    or `tensorflow_transform*`, so every first trace (fit, evaluate, predict, save, and each
    tf.data map or signature that applies the Transform graph) re-converts their Python
    source: ~5 s each for tf_keras on a small CPU, and about 0.5 s per run for the Transform
    layer, for nothing: both are written graph-safe (Keras 2 was never converted, and TFT's
    code is TF1-style graph code). Our own functions are still converted. A no-op if TF's
    private config module moves.
    """
    try:
        from tensorflow.python.autograph.core import config as autograph_config
    except ImportError:  # pragma: no cover - future TF layouts
        return
    known = {getattr(r, "_prefix", None) for r in autograph_config.CONVERSION_RULES}
    autograph_config.CONVERSION_RULES = autograph_config.CONVERSION_RULES + tuple(
        autograph_config.DoNotConvert(prefix) for prefix in prefixes if prefix not in known)


_skip_autograph_for_graph_libraries()

# custom_config keys that run_fn / tuner_fn read.
HYPERPARAMETERS_CONFIG_KEY = "hyperparameters"
WARM_START_CONFIG_KEY = "warm_start_from"
MAX_TRIALS_CONFIG_KEY = "max_trials"
CACHE_CONFIG_KEY = "cache_examples"
SEED_CONFIG_KEY = "seed"
# Without a seed in custom_config (a Trainer configured by hand): still the same every run.
DEFAULT_SEED = 42
# Inside an exported model: the features' meaning it was trained with (see features.meaning).
FEATURE_MEANING_FILE = os.path.join("assets.extra", "feature_meaning.json")
# Rows in the shuffle buffer, and rows per read of the files (parsing is cheaper in big batches).
SHUFFLE_BUFFER = 10_000
READ_BATCH_SIZE = 4096
# Training examples whose labels' mean starts a fresh model's output bias.
LABEL_MEAN_EXAMPLES = 25_600

DEFAULT_MAX_TRIALS = 3
DEFAULT_TUNER_TRAIN_STEPS = 100
DEFAULT_TUNER_EVAL_STEPS = 20

OUTPUT_KEY = features.LABEL_KEY
SERVING_DEFAULT = "serving_default"
SERVING_TF_EXAMPLE = "serving_tf_example"
TRANSFORM_FEATURES = "transform_features"

WIDE_OUTPUT_LAYER = "wide_linear"
DEEP_OUTPUT_LAYER = "deep_linear"
RMSE = "rmse"


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------

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
    return model


def model_inputs(model: tf_keras.Model, transformed: Mapping[str, tf.Tensor]) -> Dict[str, Any]:
    """Only the transformed features the model takes (calling it with extras warns)."""
    return {name: transformed[name] for name in model.input_names}


# ------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------

def read_raw_examples(file_patterns: List[str], raw_feature_spec: Mapping[str, Any]
                      ) -> tf.data.Dataset:
    """ExampleGen's tf.Examples, parsed READ_BATCH_SIZE at a time, in file order.

    tf.data's own TFRecord reader and `parse_example`, not the DataAccessor's TFXIO dataset:
    on the same files that took 3x as long (about 2 s against 0.7 s for the 290k training
    examples of 200k raw rows), paid in every run's first epoch.
    """
    files, compression = records.tfrecord_files(file_patterns)
    dataset = tf.data.TFRecordDataset(
        files, compression_type=compression,
        num_parallel_reads=tf.data.AUTOTUNE if len(files) > 1 else None)
    return dataset.batch(READ_BATCH_SIZE).map(
        lambda batch: tf.io.parse_example(batch, raw_feature_spec),
        num_parallel_calls=tf.data.AUTOTUNE)


def input_fn(
    file_pattern: List[str],
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    *,
    repeat: bool = True,
    shuffle: bool = True,
    max_examples: int = 0,
    cache: bool = False,
    seed: Optional[int] = None,
) -> tf.data.Dataset:
    """(transformed features, label [batch, 1]) batches from ExampleGen's raw tf.Examples.

    The Transform graph is applied here, as the data is read: it is the graph the serving
    signatures apply too, and the pipeline never writes a transformed copy of the data.
    `max_examples` > 0 reads only the first that many examples, so the training set size is a
    knob independent of how big the split is. `cache` keeps the transformed examples in memory
    after the first pass: reading, parsing and transforming the files every epoch cost more
    than training on them.
    """
    transform_layer = tf_transform_output.transform_features_layer()

    def transformed(raw: Dict[str, tf.Tensor]) -> Tuple[Dict[str, tf.Tensor], tf.Tensor]:
        features_out = dict(transform_layer(raw))
        return features_out, features_out.pop(pp.TRANSFORMED_LABEL_KEY)

    dataset = read_raw_examples(file_pattern, tf_transform_output.raw_feature_spec())
    dataset = dataset.map(transformed, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
    if max_examples > 0:
        dataset = dataset.take(max_examples)
    if cache:
        dataset = dataset.cache()
    if shuffle:
        dataset = dataset.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    # An explicit [batch, 1] label: MSE of [batch] against [batch, 1] would broadcast to a matrix.
    return dataset.batch(batch_size).map(
        lambda x, y: (x, tf.reshape(y, [-1, 1])),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------------------------
# Serving signatures
# ------------------------------------------------------------------------------------------------

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
    """The raw feature spec without the label and the split key, which requests do not carry."""
    spec = dict(tf_transform_output.raw_feature_spec())
    for key in (features.LABEL_KEY, features.SPLIT_KEY):
        spec.pop(key, None)
    return spec


def _signatures(model: tf_keras.Model,
                tf_transform_output: tft.TFTransformOutput) -> Dict[str, Callable]:
    # Tracked on the model so the Transform graph and its vocabulary assets are saved with it.
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = serving_raw_feature_spec(tf_transform_output)

    def transform(raw: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        transformed = model.tft_layer(dict(raw))
        transformed.pop(pp.TRANSFORMED_LABEL_KEY, None)
        return transformed

    def predict(raw: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        prediction = model(model_inputs(model, transform(raw)), training=False)
        return {OUTPUT_KEY: tf.reshape(prediction, [-1])}

    # autograph=False: straight-line graph code, nothing for AutoGraph to convert (it cost 0.3 s).
    @tf.function(input_signature=[raw_serving_specs()], autograph=False)
    def serve_raw(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
        return predict(raw_features_from_request(request))

    examples_spec = tf.TensorSpec([None], tf.string, name="examples")

    @tf.function(input_signature=[examples_spec], autograph=False)
    def serve_tf_example(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        return predict(tf.io.parse_example(examples, raw_spec))

    @tf.function(input_signature=[examples_spec], autograph=False)
    def transform_features(examples: tf.Tensor) -> Dict[str, tf.Tensor]:
        return transform(tf.io.parse_example(examples, raw_spec))

    return {
        SERVING_DEFAULT: serve_raw.get_concrete_function(),
        SERVING_TF_EXAMPLE: serve_tf_example.get_concrete_function(),
        TRANSFORM_FEATURES: transform_features.get_concrete_function(),
    }


def export_serving_model(model: tf_keras.Model, tf_transform_output: tft.TFTransformOutput,
                         serving_model_dir: str) -> None:
    """SavedModel with the three signatures; loadable by TF Serving and plain tf.saved_model.

    Beside the graph, assets.extra/ (which TF Serving leaves alone) records the features'
    meaning, so a later warm start can tell whether these weights still mean the same.
    """
    signatures = _signatures(model, tf_transform_output)
    # save_traces=False: Keras stores each layer's config instead of tracing every layer's call
    # (3x faster to save and to load for warm start); the layers are all built-in, so the model
    # revives from their configs, and the signatures above are traced and saved either way.
    model.save(serving_model_dir, save_format="tf", signatures=signatures, save_traces=False)
    meaning_file = os.path.join(serving_model_dir, FEATURE_MEANING_FILE)
    tf.io.gfile.makedirs(os.path.dirname(meaning_file))
    with tf.io.gfile.GFile(meaning_file, "w") as out:
        out.write(json.dumps(features.meaning(), indent=1, sort_keys=True))


# ------------------------------------------------------------------------------------------------
# Warm start
# ------------------------------------------------------------------------------------------------

def _weight_layout(model: tf_keras.Model) -> List[Tuple[str, Tuple[int, ...]]]:
    return [(weight.name, tuple(weight.shape)) for weight in model.weights]


def warm_start(model: tf_keras.Model, saved_model_dir: Optional[str]) -> bool:
    """Copies a previously exported model's weights into `model` if it is the same model.

    Same means the same architecture and the same features' meaning (an id must stand for the
    same value). Returns whether it did; a missing, unreadable, differently shaped or
    differently featured model starts cold (and says why) rather than failing the run, since a
    cold start is always a valid fallback.
    """
    if not saved_model_dir:
        return False
    if not tf.io.gfile.exists(saved_model_dir):
        LOGGER.warning("Warm start: %s does not exist; starting cold.", saved_model_dir)
        return False
    meaning_file = os.path.join(saved_model_dir, FEATURE_MEANING_FILE)
    if not tf.io.gfile.exists(meaning_file):
        LOGGER.warning("Warm start: %s does not record its features' meaning (exported by an "
                       "older version); starting cold.", saved_model_dir)
        return False
    with tf.io.gfile.GFile(meaning_file) as recorded:
        theirs_meaning = json.loads(recorded.read())
    if theirs_meaning != features.meaning():
        LOGGER.warning("Warm start: %s was trained with other vocabularies, buckets or cross "
                       "(%s differs from modules/features.py); starting cold.", saved_model_dir,
                       FEATURE_MEANING_FILE)
        return False
    try:
        previous = tf_keras.models.load_model(saved_model_dir, compile=False)
    except Exception as error:  # noqa: BLE001 - any unreadable model means a cold start
        LOGGER.warning("Warm start: cannot load %s (%s); starting cold.", saved_model_dir, error)
        return False
    ours, theirs = _weight_layout(model), _weight_layout(previous)
    if ours != theirs:
        differences = [f"{a} vs {b}" for a, b in zip(ours, theirs) if a != b]
        if len(ours) != len(theirs):
            differences.append(f"{len(ours)} vs {len(theirs)} weights")
        LOGGER.warning("Warm start: architecture of %s differs (%s); starting cold.",
                       saved_model_dir, "; ".join(differences[:5]))
        return False
    model.set_weights(previous.get_weights())
    LOGGER.info("Warm start: loaded weights from %s.", saved_model_dir)
    return True


# ------------------------------------------------------------------------------------------------
# TFX entry points
# ------------------------------------------------------------------------------------------------

def training_seed(fn_args: FnArgs) -> int:
    """custom_config['seed'], else DEFAULT_SEED: training is reproducible either way."""
    return int((fn_args.custom_config or {}).get(SEED_CONFIG_KEY, DEFAULT_SEED))


def seed_everything(seed: int) -> None:
    """Same data and seed, same model: Python's, NumPy's and TensorFlow's generators seeded,
    and TensorFlow's ops made deterministic (multithreaded CPU kernels may otherwise sum in
    a different order from run to run)."""
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def hyperparameters_from_fn_args(fn_args: FnArgs) -> HyperParameters:
    """custom_config['hyperparameters'] (or the defaults), overridden by the Tuner's best values."""
    custom_config = fn_args.custom_config or {}
    base = HyperParameters.from_dict(custom_config.get(HYPERPARAMETERS_CONFIG_KEY) or {})
    if fn_args.hyperparameters:
        tuned = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
        return from_keras_tuner(tuned, base)
    return base


def _train_steps_per_epoch(hparams: HyperParameters, fn_args: FnArgs
                           ) -> Optional[int]:
    """hparams' steps; else TrainArgs.num_steps spread over the epochs; else None (one pass)."""
    if hparams.train_steps_per_epoch:
        return hparams.train_steps_per_epoch
    if fn_args.train_steps:
        return max(1, fn_args.train_steps // hparams.epochs)
    return None


def _datasets(fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput,
              batch_size: int, max_examples: int, *, repeat_train: bool, repeat_eval: bool,
              cache: bool) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    """Finite datasets are one pass per epoch; repeated ones need steps (Keras stops on them)."""
    train = input_fn(fn_args.train_files, tf_transform_output, batch_size,
                     repeat=repeat_train, max_examples=max_examples, cache=cache,
                     seed=training_seed(fn_args))
    evaluation = input_fn(fn_args.eval_files, tf_transform_output,
                          batch_size, repeat=repeat_eval, shuffle=False, cache=cache)
    return train, evaluation


def training_label_mean(file_patterns: List[str], raw_feature_spec: Mapping[str, Any],
                        max_examples: int = LABEL_MEAN_EXAMPLES) -> float:
    """The mean label of the first `max_examples` raw training examples, in file order.

    Read raw: Transform passes the label through unchanged, so parsing the label column alone
    gives the same values without running the Transform graph (ExampleGen's files are already
    in a shuffled order).
    """
    label_spec = {features.LABEL_KEY: raw_feature_spec[features.LABEL_KEY]}
    total, count = 0.0, 0
    for batch in read_raw_examples(file_patterns, label_spec):
        labels = tf.reshape(tf.cast(batch[features.LABEL_KEY], tf.float64), [-1])
        labels = labels[:max_examples - count]
        total += float(tf.reduce_sum(labels))
        count += int(tf.size(labels))
        if count >= max_examples:
            break
    return total / max(count, 1)


def start_at_label_mean(model: tf_keras.Model, mean: float) -> None:
    """Starts the output at the training labels' mean (the wide bias at its logit).

    A fresh model predicts about 0 lb for babies that weigh about 7: a short run (a Tuner
    trial, a small dataset) would spend its steps climbing to the mean instead of learning
    from the features.
    """
    label = features.LABEL_RANGE
    model.get_layer(WIDE_OUTPUT_LAYER).bias.assign(
        [layers.logit_of(mean, label.min_pounds, label.max_pounds)])


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point: train, then export the serving model with its signatures.

    Reads custom_config['hyperparameters'] (HyperParameters.to_dict()), fn_args.hyperparameters
    (the Tuner's best, overriding), custom_config['warm_start_from'] (an exported model dir;
    falls back to fn_args.base_model) and custom_config['seed'] (see seed_everything).
    """
    hparams = hyperparameters_from_fn_args(fn_args)
    LOGGER.info("Training with %s, seed %d", hparams, training_seed(fn_args))
    seed_everything(training_seed(fn_args))
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    steps_per_epoch = _train_steps_per_epoch(hparams, fn_args)
    custom_config = fn_args.custom_config or {}
    train, evaluation = _datasets(fn_args, tf_transform_output, hparams.batch_size,
                                  hparams.num_train_examples, repeat_train=bool(steps_per_epoch),
                                  repeat_eval=bool(fn_args.eval_steps),
                                  cache=bool(custom_config.get(CACHE_CONFIG_KEY, True)))

    model = build_keras_model(hparams)
    if not warm_start(model, custom_config.get(WARM_START_CONFIG_KEY) or fn_args.base_model):
        start_at_label_mean(model, training_label_mean(
            fn_args.train_files, tf_transform_output.raw_feature_spec()))

    callbacks = [
        tf_keras.callbacks.EarlyStopping(monitor="val_loss",
                                         patience=hparams.early_stopping_patience,
                                         restore_best_weights=True, verbose=1),
        # Loss and RMSE per epoch; not the graph, which took 0.4 s to write every run (the
        # exported model shows it: `saved_model_cli show --all --dir <model>`).
        tf_keras.callbacks.TensorBoard(log_dir=fn_args.model_run_dir, update_freq="epoch",
                                       write_graph=False),
        training_log.EpochProgress(hparams.epochs),
    ]
    training_log.write_hparams(fn_args.model_run_dir, hparams.to_dict())
    started = time.monotonic()
    history = model.fit(train, epochs=hparams.epochs, steps_per_epoch=steps_per_epoch,
                        validation_data=evaluation, validation_steps=fn_args.eval_steps or None,
                        callbacks=callbacks, verbose=0)  # EpochProgress logs each epoch
    LOGGER.info("Trained %d epochs in %.1f s; best validation RMSE %.4f", len(history.epoch),
                time.monotonic() - started, min(history.history.get(f"val_{RMSE}", [float("nan")])))
    started = time.monotonic()
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
    LOGGER.info("Exported the serving model in %.1f s to %s", time.monotonic() - started,
                fn_args.serving_model_dir)


class _HyperModel(keras_tuner.HyperModel):
    """Builds a trial's model and its datasets: batch size is tuned, so fit() makes the input."""

    def __init__(self, base: HyperParameters, fn_args: FnArgs,
                 tf_transform_output: tft.TFTransformOutput) -> None:
        super().__init__(name="babyweight")
        self._base = base
        self._fn_args = fn_args
        self._tf_transform_output = tf_transform_output
        self._label_mean = training_label_mean(fn_args.train_files,
                                               tf_transform_output.raw_feature_spec())

    def build(self, hp: keras_tuner.HyperParameters) -> tf_keras.Model:
        return build_keras_model(from_keras_tuner(hp, self._base))

    def fit(self, hp: keras_tuner.HyperParameters, model: tf_keras.Model, *args: Any,
            **kwargs: Any) -> tf_keras.callbacks.History:
        hparams = from_keras_tuner(hp, self._base)
        train, evaluation = _datasets(self._fn_args, self._tf_transform_output,
                                      hparams.batch_size, hparams.num_train_examples,
                                      repeat_train=True, repeat_eval=True,
                                      cache=False)  # a trial reads part of one epoch
        start_at_label_mean(model, self._label_mean)
        return model.fit(train, *args, validation_data=evaluation, **kwargs)


class TfKerasRandomSearch(keras_tuner.engine.base_tuner.BaseTuner):
    """Random search that trains tf_keras models.

    Why not keras_tuner.RandomSearch: with Keras 3 installed, KerasTuner 1.4 checks models,
    callbacks and histories against Keras 3 classes and rejects tf_keras ones. BaseTuner is
    framework-agnostic: a trial builds, fits and returns its best objective value itself.
    """

    def __init__(self, hypermodel: _HyperModel, hyperparameters: keras_tuner.HyperParameters,
                 max_trials: int, directory: str, project_name: str,
                 objective: str = "val_loss", seed: Optional[int] = None) -> None:
        oracle = keras_tuner.oracles.RandomSearchOracle(
            objective=keras_tuner.Objective(objective, "min"), max_trials=max_trials,
            hyperparameters=hyperparameters, seed=seed)
        super().__init__(oracle=oracle, hypermodel=hypermodel, directory=directory,
                         project_name=project_name, overwrite=True)
        self._trial_seed = DEFAULT_SEED if seed is None else seed

    def run_trial(self, trial: Any, *fit_args: Any, **fit_kwargs: Any) -> Dict[str, float]:
        tf_keras.backend.clear_session()
        seed_everything(self._trial_seed)  # a trial's result depends on its values, not its turn
        hp = trial.hyperparameters
        model = self.hypermodel.build(hp)
        history = self.hypermodel.fit(hp, model, *fit_args, **fit_kwargs)
        name = self.oracle.objective.name
        return {name: float(min(history.history[name]))}


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner entry point: a small random search over model size, learning rate, batch size.

    Reads custom_config['hyperparameters'] (the base values and search defaults),
    custom_config['max_trials'] (default 3) and custom_config['seed'] (the search's and each
    trial's seed). Each trial is one epoch of fn_args.train_steps
    (TrainArgs.num_steps, default 100) validated on fn_args.eval_steps (default 20) batches.
    """
    custom_config = fn_args.custom_config or {}
    base = HyperParameters.from_dict(custom_config.get(HYPERPARAMETERS_CONFIG_KEY) or {})
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    tuner = TfKerasRandomSearch(
        _HyperModel(base, fn_args, tf_transform_output),
        hyperparameters=search_space(base),
        max_trials=int(custom_config.get(MAX_TRIALS_CONFIG_KEY, DEFAULT_MAX_TRIALS)),
        directory=fn_args.working_dir,
        project_name="babyweight_tuning",
        seed=training_seed(fn_args),
    )
    return TunerFnResult(
        tuner=tuner,
        fit_kwargs={
            "epochs": 1,
            "steps_per_epoch": fn_args.train_steps or DEFAULT_TUNER_TRAIN_STEPS,
            "validation_steps": fn_args.eval_steps or DEFAULT_TUNER_EVAL_STEPS,
            "verbose": 2,
        },
    )
