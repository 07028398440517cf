"""The names that cross folders: custom_config keys, signature names, the output key, defaults.

The wiring (pipelines/pipeline.py), the Evaluator's config (pipelines/evaluation.py), the
reports (reports/evaluation_results.py) and the server (serving/validation.py) spell these the
way the module code does; they read them from here, which imports no TensorFlow, so building the DAG or starting the server's request checks
does not load TensorFlow, tf_keras or KerasTuner for three strings.
"""
from __future__ import annotations

import os
import pathlib
from typing import Any

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
# The training query's text (warehouse/queries/babyweight.sql as the examples were read with it):
# the export records it, so prediction from the table's own values maps them as training did.
TRAINING_QUERY_CONFIG_KEY = "training_query"
# ... and the splits' buckets (common.config.DataConfig.split_layout), so batch prediction's
# --split keeps the rows the version held out, whatever the checkout's split flags say.
TRAINING_SPLITS_CONFIG_KEY = "training_splits"
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
# TF Serving's regression signature: serialized tf.Examples in, the weight out.
REGRESSION = "regression"
REGRESS_METHOD = "tensorflow/serving/regress"
REGRESS_INPUTS, REGRESS_OUTPUTS = "inputs", "outputs"

# Inside an exported model: the features' meaning it was trained with (see features.meaning).
FEATURE_MEANING_FILE = os.path.join("assets.extra", "feature_meaning.json")
# ... and the query its examples were read with (serving/training_query.py reads it back).
TRAINING_QUERY_FILE = os.path.join("assets.extra", "training_query.sql")
TRAINING_SPLITS_FILE = os.path.join("assets.extra", "training_splits.json")

# The Evaluator's names, as pipelines/evaluation.py configures them and the reports and the
# pusher read them back: the overall slice, the metrics (pipelines/tfma_metrics.py computes them)
# and the classes computing RMSE and impossible predictions (earlier runs' configs named TFMA's
# own RootMeanSquaredError).
OVERALL_SLICE = "Overall"
RMSE_METRIC = "root_mean_squared_error"
MAE_METRIC = "mean_absolute_error"
EXAMPLE_COUNT_METRIC = "example_count"
OUTSIDE_LABEL_RANGE_METRIC = "predictions_outside_label_range"
RMSE_CLASS = "BatchedRootMeanSquaredError"
RMSE_CLASSES = (RMSE_CLASS, "RootMeanSquaredError")
OUTSIDE_LABEL_RANGE_CLASS = "BatchedPredictionsOutsideLabelRange"

# The curated schema (written by `python -m pipelines.schema write`) and its environments: the
# label is not in SERVING, so the monitoring compares served requests against it without one.
SCHEMA_FILE = pathlib.Path(__file__).resolve().parent.parent / "schema" / "schema.pbtxt"
TRAINING_ENVIRONMENT, SERVING_ENVIRONMENT = "TRAINING", "SERVING"


def load_schema(path: pathlib.Path = SCHEMA_FILE) -> Any:
    """The schema file as a tensorflow_metadata Schema proto (no TensorFlow import)."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    return text_format.Parse(pathlib.Path(path).read_text(), schema_pb2.Schema())
