"""Training: TFX's Trainer entry point (run_fn, loaded as modules.model.run_fn) and its seeds."""
from __future__ import annotations

import logging
import time
from typing import Optional, Tuple

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
# Direct imports: `from tfx import v1` imports the Vertex extension too, a long import per process.
from tfx.components.trainer.fn_args_utils import FnArgs

from modules.contract import (CACHE_CONFIG_KEY, CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY,
                              DEFAULT_CACHE_MAX_MEMORY_FRACTION, DEFAULT_SEED,
                              HYPERPARAMETERS_CONFIG_KEY, SEED_CONFIG_KEY,
                              TRAINING_QUERY_CONFIG_KEY, TRAINING_SPLITS_CONFIG_KEY,
                              WARM_START_CONFIG_KEY)
from modules import example_cache, training_log, warmup
from modules.export import export_serving_model
from modules.hparams import HyperParameters, from_keras_tuner
from modules.model_input import input_fn, training_label_mean
from modules.network import RMSE, build_keras_model, start_at_label_mean
from modules.warm_start import warm_start

LOGGER = logging.getLogger("babyweight.model")  # shown by common/logs.py


def training_seed(fn_args: FnArgs) -> int:
    """custom_config['seed'], else DEFAULT_SEED: training is reproducible either way."""
    return int((fn_args.custom_config or {}).get(SEED_CONFIG_KEY, DEFAULT_SEED))


def seed_everything(seed: int) -> None:
    """Same data and seed, same model: Python's, NumPy's and TensorFlow's generators seeded.

    Seeds are enough on CPU (tests/test_model.py checks two runs bit for bit): the input
    pipeline's parallel steps keep their order and the model's CPU kernels split their work
    the same way each run. TensorFlow's op determinism, which makes every epoch markedly
    slower, is switched on only where a GPU trains (e.g. a Vertex training machine with an
    accelerator): GPU kernels may sum in another order from run to run.
    """
    tf_keras.utils.set_random_seed(seed)
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()


def hyperparameters_from_fn_args(fn_args: FnArgs) -> HyperParameters:
    """custom_config['hyperparameters'] (or the defaults), overridden by the Tuner's best values."""
    custom_config = fn_args.custom_config or {}
    base = HyperParameters.from_dict(custom_config.get(HYPERPARAMETERS_CONFIG_KEY) or {})
    if fn_args.hyperparameters:
        tuned = keras_tuner.HyperParameters.from_config(fn_args.hyperparameters)
        return from_keras_tuner(tuned, base)
    return base


def train_steps_per_epoch(hparams: HyperParameters, fn_args: FnArgs
                           ) -> Optional[int]:
    """hparams' steps; else TrainArgs.num_steps spread over the epochs; else None (one pass)."""
    if hparams.train_steps_per_epoch:
        return hparams.train_steps_per_epoch
    if fn_args.train_steps:
        return max(1, fn_args.train_steps // hparams.epochs)
    return None


def datasets(fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput,
              batch_size: int, max_examples: int, *, repeat_train: bool, repeat_eval: bool,
              cache: bool, eval_batch_size: int = 0, max_eval_examples: int = 0
              ) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    """Finite datasets are one pass per epoch; repeated ones need steps (Keras stops on them).

    `eval_batch_size` > 0 batches the eval set at its own size and `max_eval_examples` > 0
    keeps its first that many examples: the Tuner's trials then validate on the same rows.
    """
    train = input_fn(fn_args.train_files, tf_transform_output, batch_size,
                     repeat=repeat_train, max_examples=max_examples, cache=cache,
                     seed=training_seed(fn_args))
    evaluation = input_fn(fn_args.eval_files, tf_transform_output,
                          eval_batch_size or batch_size, repeat=repeat_eval, shuffle=False,
                          max_examples=max_eval_examples, cache=cache)
    return train, evaluation


def use_cache(fn_args: FnArgs, tf_transform_output: tft.TFTransformOutput) -> bool:
    """custom_config's cache setting, off when the examples would not fit in memory."""
    custom_config = fn_args.custom_config or {}
    if not custom_config.get(CACHE_CONFIG_KEY, True):
        return False
    fraction = float(custom_config.get(CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY,
                                       DEFAULT_CACHE_MAX_MEMORY_FRACTION))
    return example_cache.cache_fits([fn_args.train_files, fn_args.eval_files],
                                    tf_transform_output.transformed_feature_spec(), fraction)


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
    steps_per_epoch = train_steps_per_epoch(hparams, fn_args)
    custom_config = fn_args.custom_config or {}
    train, evaluation = datasets(fn_args, tf_transform_output, hparams.batch_size,
                                  hparams.num_train_examples, repeat_train=bool(steps_per_epoch),
                                  repeat_eval=bool(fn_args.eval_steps),
                                  cache=use_cache(fn_args, tf_transform_output))

    model = build_keras_model(hparams)
    if not warm_start(model, custom_config.get(WARM_START_CONFIG_KEY) or fn_args.base_model):
        start_at_label_mean(model, training_label_mean(
            fn_args.train_files, tf_transform_output.raw_feature_spec()))

    callbacks = [
        tf_keras.callbacks.EarlyStopping(monitor="val_loss",
                                         patience=hparams.early_stopping_patience,
                                         restore_best_weights=True, verbose=1),
        # Loss and RMSE per epoch; not the graph, rewritten every run for nothing: the exported
        # model shows it (`saved_model_cli show --all --dir <model>`).
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
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir,
                         custom_config.get(TRAINING_QUERY_CONFIG_KEY),
                         custom_config.get(TRAINING_SPLITS_CONFIG_KEY))
    warmup.write_from_eval(fn_args.serving_model_dir, fn_args.eval_files)
    LOGGER.info("Exported the serving model in %.1f s to %s", time.monotonic() - started,
                fn_args.serving_model_dir)

