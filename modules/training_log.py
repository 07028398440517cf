"""What training tells a person and TensorBoard: epoch progress lines and the run's hparams.

Progress goes through the `babyweight.model` logger, which the runner's log filter shows
(common/logs.py passes every `babyweight.*` logger), one line per epoch that stays readable
in a log file (Keras' own progress bar rewrites its line). The hyperparameters go to
TensorBoard's HParams plugin, in the run TensorBoard lists under the pipeline run's name, so
runs can be compared by them.
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

LOGGER = logging.getLogger("babyweight.model")


class EpochProgress(tf_keras.callbacks.Callback):
    """Logs 'epoch i/n: steps, seconds, loss, validation metrics' after every epoch."""

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs
        self._started = time.monotonic()
        self._steps = 0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._started, self._steps = time.monotonic(), 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self._steps = batch + 1

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        values = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items())
                           if isinstance(v, (int, float)))
        LOGGER.info("Trainer epoch %d/%d: %d steps in %.1f s; %s", epoch + 1, self.epochs,
                    self._steps, time.monotonic() - self._started, values)


def hparam_values(values: Mapping[str, Any]) -> Dict[str, Any]:
    """The HParams plugin takes bool, int, float and str: anything else is shown as text."""
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v)
            for k, v in values.items()}


TRAIN_RUN = "train"  # the sub-run Keras' TensorBoard callback writes the training curves to


def write_hparams(log_dir: str, values: Mapping[str, Any],
                  run_name: Optional[str] = None) -> None:
    """Records the hyperparameters for TensorBoard's HParams tab, beside the training curves.

    Written into the `train` run Keras writes anyway, so TensorBoard lists no extra run; that
    run is shown under the pipeline run's name (runs/tensorboard/<run>/train), and `run_name`
    names the HParams session (default: TensorBoard's own name for the run).
    """
    from tensorboard.plugins.hparams import api as hp

    with tf.summary.create_file_writer(os.path.join(log_dir, TRAIN_RUN)).as_default():
        hp.hparams(hparam_values(values), trial_id=run_name)
