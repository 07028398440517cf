"""Tiny tf.Modules saved as model versions: for the tests of how the server binds and calls
signatures (test_session_model.py, test_session_callable.py), and stand-ins of the trained
model for the tests of which version serves (hot reload, deletion, labels), where what a
version predicts only has to tell it from another. A stand-in has the served model's interface
(the declared features in, the label out) and arithmetic for a body: the real server loads it
as it loads the trained model, without the graph and warmup requests that make most of a load's
cost."""
from __future__ import annotations

import pathlib
from typing import Dict

import pytest
import tensorflow as tf

from modules import features

STAND_IN_VERSIONS = (1, 2)


def saved_version(module: tf.Module, tmp_path_factory: pytest.TempPathFactory,
                  name: str) -> pathlib.Path:
    """`module.serve` saved as the serving_default signature of `<new dir>/1`."""
    path = tmp_path_factory.mktemp(name) / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


class StandIn(tf.Module):
    """The declared features in, LABEL_KEY out: a few pounds, `offset` apart between versions
    (and moved by every feature, so rows differ too)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = tf.constant(offset, tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="is_male"),
                                  tf.TensorSpec([None], tf.float32, name="mother_age"),
                                  tf.TensorSpec([None], tf.string, name="plurality"),
                                  tf.TensorSpec([None], tf.float32, name="gestation_weeks")])
    def serve(self, is_male: tf.Tensor, mother_age: tf.Tensor, plurality: tf.Tensor,
              gestation_weeks: tf.Tensor) -> Dict[str, tf.Tensor]:
        male = tf.cast(tf.equal(is_male, features.IS_MALE_TRUE), tf.float32)
        single = tf.cast(tf.equal(plurality, features.PLURALITY_NAMES[0]), tf.float32)
        pounds = (self.offset + 0.1 * gestation_weeks + 0.01 * mother_age + 0.3 * male
                  + 0.5 * single)
        return {features.LABEL_KEY: pounds}


def save_stand_ins(directory: pathlib.Path) -> Dict[str, str]:
    """STAND_IN_VERSIONS' stand-ins saved under `directory` (version -> path, JSON-ready for
    tests/made_once.py)."""
    declared = set(features.FEATURE_NAMES)
    if declared != {"is_male", "mother_age", "plurality", "gestation_weeks"}:
        raise AssertionError(f"StandIn.serve takes other features than the declared {declared}")
    saved = {}
    for version in STAND_IN_VERSIONS:
        path = directory / f"stand_in_{version}"
        module = StandIn(float(version))
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
        saved[str(version)] = str(path)
    return saved
