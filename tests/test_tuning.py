"""The Tuner's trials validate on the same eval rows whatever batch size they try.

Over the shared models' Transform output (tests/model_fixtures.py: EVAL_ROWS eval rows, each
label distinct), so the rows a validation set yields are told apart by their labels.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import keras_tuner
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from modules import contract, features, model_input, tuning
from modules.hparams import BATCH_SIZE_CHOICES, HyperParameters
from tests.model_fixtures import EVAL_ROWS, HPARAMS, TrainedModels, make_fn_args

pytest_plugins = ("tests.model_fixtures",)

BASE = dataclasses.replace(HPARAMS, batch_size=8)


def _hypermodel(trained_models: TrainedModels, eval_steps: int) -> tuning._HyperModel:
    args = make_fn_args(trained_models.work, BASE)
    args.eval_steps = eval_steps
    output = tft.TFTransformOutput(str(trained_models.work / "transform_graph"))
    return tuning._HyperModel(BASE, args, output)


def _validation_set(hypermodel: tuning._HyperModel, batch_size: int
                    ) -> List[Dict[str, np.ndarray]]:
    """The batches a trial at `batch_size` validates on, as NumPy (the label under its key)."""
    hp = keras_tuner.HyperParameters()
    hp.Fixed("batch_size", batch_size)
    _, evaluation = hypermodel.trial_datasets(hp)
    return [{**{k: v.numpy() for k, v in x.items()}, features.LABEL_KEY: y.numpy()}
            for x, y in evaluation]


def _eval_labels_in_file_order(trained_models: TrainedModels) -> np.ndarray:
    output = tft.TFTransformOutput(str(trained_models.work / "transform_graph"))
    spec = {features.LABEL_KEY: output.raw_feature_spec()[features.LABEL_KEY]}
    batches = model_input.read_raw_examples([str(trained_models.work / "raw" / "eval" / "*.gz")],
                                            spec)
    return np.concatenate([tf.reshape(b[features.LABEL_KEY], [-1]).numpy() for b in batches])


@pytest.mark.parametrize("eval_steps, rows", [(3, 3 * BASE.batch_size),  # the first 24 rows
                                              (100, EVAL_ROWS)])  # more than the split: all once
def test_every_trial_validates_on_the_same_rows(trained_models: TrainedModels, eval_steps: int,
                                                rows: int) -> None:
    hypermodel = _hypermodel(trained_models, eval_steps)
    sets = {size: _validation_set(hypermodel, size) for size in BATCH_SIZE_CHOICES}
    first = sets[BATCH_SIZE_CHOICES[0]]
    for size, batches in sets.items():
        assert [b[features.LABEL_KEY].shape[0] for b in batches] == \
            [len(b[features.LABEL_KEY]) for b in first], size
        for got, want in zip(batches, first):
            assert set(got) == set(want)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{size} {key}")
    # Batched at the base batch size, whatever the trial's.
    sizes = [b[features.LABEL_KEY].shape[0] for b in first]
    assert sizes[:-1] == [BASE.batch_size] * (len(sizes) - 1) and 0 < sizes[-1] <= BASE.batch_size
    labels = np.concatenate([b[features.LABEL_KEY].reshape(-1) for b in first])
    assert labels.size == rows
    assert np.unique(labels).size == rows  # no row twice
    # The eval split's first rows, in file order (Transform passes the label through).
    np.testing.assert_array_equal(labels, _eval_labels_in_file_order(trained_models)[:rows])


def test_the_tuner_reads_the_whole_validation_set_each_trial(trained_models: TrainedModels,
                                                              tmp_path) -> None:
    """No validation_steps: Keras reads the finite set through, so it ends where the rows do."""
    args = make_fn_args(trained_models.work, BASE, **{contract.MAX_TRIALS_CONFIG_KEY: 1})
    args.working_dir = str(tmp_path)
    result = tuning.tuner_fn(args)
    assert "validation_steps" not in result.fit_kwargs
    assert result.tuner.hypermodel.validation_examples == \
        contract.DEFAULT_TUNER_EVAL_STEPS * BASE.batch_size
