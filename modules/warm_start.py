"""Warm start: a new model starts from the last blessed model's weights when they mean the same."""
from __future__ import annotations

import json
import logging
import os
from typing import List, Optional, Tuple

import tensorflow as tf
import tf_keras

from modules import features
from modules.contract import FEATURE_MEANING_FILE

LOGGER = logging.getLogger("babyweight.model")


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
    differences = features.meaning_differences(theirs_meaning)
    if differences:
        LOGGER.warning("Warm start: %s was trained with other vocabularies, buckets or cross "
                       "(%s differs from modules/features.py: %s); starting cold.",
                       saved_model_dir, FEATURE_MEANING_FILE, "; ".join(differences))
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
