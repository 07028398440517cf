"""Typed configuration of a pipeline run, with command-line flags generated from it.

The settings every command shares (warehouse, splits, run directories) and the flag mechanism are
`common.config`, re-exported here so the pipeline's code reads all of its configuration from one
module; the training and evaluation settings are declared below.
"""
from __future__ import annotations

import dataclasses

from common.config import (  # noqa: F401 - re-exported: the pipeline's one config module
    PIPELINE_NAME,
    PROJECT_ROOT,
    DataConfig,
    PipelineConfig,
    WarehouseConfig,
    add_flags,
    flag_type,
    from_flags,
    setting,
)
from modules import contract


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How the model is trained; the model's own hyperparameters are modules.hparams."""

    tune: bool = setting(False, "Search hyperparameters with the Tuner before training.")
    tuner_max_trials: int = setting(contract.DEFAULT_MAX_TRIALS,
                                    "Tuner trials (each a short training run).", minimum=1)
    tuner_train_steps: int = setting(contract.DEFAULT_TUNER_TRAIN_STEPS,
                                     "Training steps of each Tuner trial.", minimum=1)
    warm_start: bool = setting(
        False, "Start training from the last blessed model's weights when the architecture "
        "and the features' meaning match (continuous training).")
    eval_steps: int = setting(
        0, "Validation batches per epoch; 0 = the whole eval split.", minimum=0)
    cache_examples: bool = setting(
        True, "Keep the transformed examples in memory after the first epoch instead of "
        "re-reading and re-parsing the files every epoch (turn off when they do not fit in RAM).")
    cache_examples_max_memory_fraction: float = setting(
        contract.DEFAULT_CACHE_MAX_MEMORY_FRACTION,
        "The example cache turns itself off (one log line says so) when its estimated size "
        "is over this fraction of the machine's memory.", above=0, maximum=1)
    training_seed: int = setting(
        42, "Seed of the model's initial weights, the training data's shuffle and the Tuner's "
        "search: the same data and seed train the same model.", minimum=0)


@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
    """When a model is good enough to push: TFMA's thresholds on the eval split."""

    rmse_upper_bound: float = setting(
        1.15, "A model is blessed only with an overall eval RMSE (lb) of at most this.", above=0)
    max_rmse_increase: float = setting(
        0.01, "...and at most this much worse (lb) than the last blessed model, if any.")
    gate_slices: bool = setting(
        False, "Apply the RMSE bound to every slice too (tiny slices such as triplets "
        "then block pushes); by default slices are reported, not gated.")
