"""The Tuner: a seeded random search over tf_keras models (tuner_fn, loaded as modules.model.tuner_fn)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import keras_tuner
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from modules.contract import (DEFAULT_MAX_TRIALS, DEFAULT_SEED, DEFAULT_TUNER_EVAL_STEPS,
                              DEFAULT_TUNER_TRAIN_STEPS, HYPERPARAMETERS_CONFIG_KEY,
                              MAX_TRIALS_CONFIG_KEY)
from modules.hparams import HyperParameters, from_keras_tuner, search_space
from modules.model_input import training_label_mean
from modules.network import build_keras_model, start_at_label_mean
from modules.training import datasets, seed_everything, training_seed


class _HyperModel(keras_tuner.HyperModel):
    """Builds a trial's model and its datasets: batch size is tuned, so fit() makes the input.

    Every trial validates on the same rows, batched the same way, whatever its batch size:
    the first eval_steps (else DEFAULT_TUNER_EVAL_STEPS) batches of the base batch size, or
    the whole eval split if smaller, each once. Validating on eval_steps batches of the
    trial's own size compared the trials on different rows (and repeated some).
    """

    def __init__(self, base: HyperParameters, fn_args: FnArgs,
                 tf_transform_output: tft.TFTransformOutput) -> None:
        super().__init__(name="babyweight")
        self._base = base
        self._fn_args = fn_args
        self._tf_transform_output = tf_transform_output
        self._label_mean = training_label_mean(fn_args.train_files,
                                               tf_transform_output.raw_feature_spec())
        self.validation_examples = ((fn_args.eval_steps or DEFAULT_TUNER_EVAL_STEPS)
                                    * base.batch_size)

    def build(self, hp: keras_tuner.HyperParameters) -> tf_keras.Model:
        return build_keras_model(from_keras_tuner(hp, self._base))

    def trial_datasets(self, hp: keras_tuner.HyperParameters
                       ) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
        """The trial's repeated training set at its batch size; the validation set every trial's."""
        hparams = from_keras_tuner(hp, self._base)
        return datasets(self._fn_args, self._tf_transform_output, hparams.batch_size,
                        hparams.num_train_examples, repeat_train=True, repeat_eval=False,
                        cache=False,  # a trial reads part of one epoch
                        eval_batch_size=self._base.batch_size,
                        max_eval_examples=self.validation_examples)

    def fit(self, hp: keras_tuner.HyperParameters, model: tf_keras.Model, *args: Any,
            **kwargs: Any) -> tf_keras.callbacks.History:
        train, evaluation = self.trial_datasets(hp)
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
    custom_config['max_trials'] (else DEFAULT_MAX_TRIALS) and custom_config['seed'] (the search's and each
    trial's seed). Each trial is one epoch of fn_args.train_steps
    (TrainArgs.num_steps, else DEFAULT_TUNER_TRAIN_STEPS), validated on the same first
    fn_args.eval_steps (else DEFAULT_TUNER_EVAL_STEPS) batches of the base batch size
    (_HyperModel).
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
            "verbose": 2,
        },
    )
