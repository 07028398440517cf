"""A tiny tf.Module saved as version 1 of a model, for the tests of how the server binds and
calls signatures (test_session_model.py, test_session_callable.py)."""
from __future__ import annotations

import pathlib

import pytest
import tensorflow as tf


def saved_version(module: tf.Module, tmp_path_factory: pytest.TempPathFactory,
                  name: str) -> pathlib.Path:
    """`module.serve` saved as the serving_default signature of `<new dir>/1`."""
    path = tmp_path_factory.mktemp(name) / "1"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path
