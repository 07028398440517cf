"""The names that cross folders: custom_config keys, signature names, the output key, defaults.

The wiring (pipelines/pipeline.py), the Evaluator's config (pipelines/evaluation.py) and the
server (serving/validation.py) spell these the way the module code does; they read them from
here, which imports no TensorFlow, so building the DAG or starting the server's request checks
does not load TensorFlow, tf_keras or KerasTuner for three strings.
"""
from __future__ import annotations

import os

from modules import features

# custom_config keys that run_fn / tuner_fn read.
HYPERPARAMETERS_CONFIG_KEY = "hyperparameters"
WARM_START_CONFIG_KEY = "warm_start_from"
MAX_TRIALS_CONFIG_KEY = "max_trials"
CACHE_CONFIG_KEY = "cache_examples"
CACHE_MAX_MEMORY_FRACTION_CONFIG_KEY = "cache_examples_max_memory_fraction"
# The example cache may take up to this share of the machine's memory (modules/example_cache.py).
DEFAULT_CACHE_MAX_MEMORY_FRACTION = 0.5
SEED_CONFIG_KEY = "seed"
# Without a seed in custom_config (a Trainer configured by hand): still the same every run.
DEFAULT_SEED = 42

# The Tuner's defaults, for the flags (pipelines.config.TrainingConfig), the wiring and a Tuner
# configured by hand (tuner_fn without TrainArgs/EvalArgs steps).
DEFAULT_MAX_TRIALS = 3
DEFAULT_TUNER_TRAIN_STEPS = 200
DEFAULT_TUNER_EVAL_STEPS = 20

# The exported model's signatures, their output and the serialized-examples input name.
OUTPUT_KEY = features.LABEL_KEY
SERVING_DEFAULT = "serving_default"
SERVING_TF_EXAMPLE = "serving_tf_example"
TRANSFORM_FEATURES = "transform_features"
EXAMPLES_INPUT = "examples"

# Inside an exported model: the features' meaning it was trained with (see features.meaning).
FEATURE_MEANING_FILE = os.path.join("assets.extra", "feature_meaning.json")
