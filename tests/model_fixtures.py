"""Two models trained once per test run, shared by test_model.py and the serving tests.

Rows follow a known formula (sex, plurality and gestation effects plus small noise), so about
a hundred steps are enough to show the model learns. Transform runs for real on them once
(test_preprocessing's `analyze_and_transform`), then the Trainer's own run_fn trains twice on its
output, at the default layer and batch sizes: version 1 with the default seed, version 2 with
another. The serving tests serve both (version 2's other weights make a hot reload visible in
the predictions); test_model.py checks version 1's exports and learning, and that the seed is
what tells the two apart. Made once per run, also across xdist workers (tests/made_once.py), so
only read: a test that trains again writes under its own tmp_path.

Test modules load this file with `pytest_plugins = ("tests.model_fixtures",)` (importing the
fixture by name would define it once per module, training again).
"""
from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from typing import Dict, Iterator, List

import numpy as np
import pytest

from common.config import DataConfig
from modules import contract, features
from modules.hparams import HyperParameters
from warehouse import sql
from tests.made_once import made_once

Row = Dict[str, list]

TRAIN_ROWS, EVAL_ROWS = 800, 60
TRAIN_SEED, EVAL_SEED = 1, 4
# The default network and batch (where TensorFlow's CPU kernels split their work across
# threads), on a short schedule.
HPARAMS = dataclasses.replace(HyperParameters(), learning_rate=0.02, epochs=3,
                              train_steps_per_epoch=40, early_stopping_patience=2)
# Version -> custom_config['seed'] (None: none given, run_fn's default seed).
SEEDS: Dict[int, object] = {1: None, 2: contract.DEFAULT_SEED + 1}


def synthetic_rows(count: int, seed: int) -> List[Row]:
    """Rows whose label is a known function of the features plus N(0, 0.3) noise."""
    from tests.test_preprocessing import raw_row

    rng = np.random.default_rng(seed)
    sexes = (features.IS_MALE_TRUE, features.IS_MALE_FALSE, features.IS_MALE_UNKNOWN)
    sex_effect = {features.IS_MALE_TRUE: 0.3, features.IS_MALE_FALSE: -0.3,
                  features.IS_MALE_UNKNOWN: 0.0}
    rows = []
    for _ in range(count):
        sex = sexes[rng.integers(len(sexes))]
        single = rng.random() < 0.8
        plurality = features.PLURALITY_NAMES[0] if single else features.PLURALITY_NAMES[1]
        age = int(rng.integers(16, 45))
        weeks = int(rng.integers(30, 44))
        weight = (7.4 + sex_effect[sex] - (0.0 if single else 1.5)
                  + 0.35 * (min(weeks, 41) - 39) + 0.01 * (age - 30) + rng.normal(0, 0.3))
        rows.append(raw_row(sex, plurality, age, weeks, weight_pounds=weight,
                            hashmonth=int(rng.integers(1, 10**6))))
    return rows


def train_rows() -> List[Row]:
    return synthetic_rows(TRAIN_ROWS, TRAIN_SEED)


def eval_rows() -> List[Row]:
    return synthetic_rows(EVAL_ROWS, EVAL_SEED)


def seed_config(seed: object) -> Dict[str, object]:
    return {} if seed is None else {contract.SEED_CONFIG_KEY: seed}


def make_fn_args(work: pathlib.Path, hparams: HyperParameters, **custom: object):
    """FnArgs as TFX's Trainer builds them, over `analyze_and_transform`'s output layout."""
    from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
    from tfx.components.util import tfxio_utils
    from tfx.types import standard_artifacts

    examples = standard_artifacts.Examples()  # tf.Example payload, like ExampleGen's output
    accessor = DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)
    return FnArgs(
        working_dir=str(work / "working"),
        train_files=[str(work / "raw" / "train" / "*.gz")],
        eval_files=[str(work / "raw" / "eval" / "*.gz")],
        transform_graph_path=str(work / "transform_graph"),
        data_accessor=accessor,
        serving_model_dir=str(work / "serving_model"),
        model_run_dir=str(work / "model_run"),
        custom_config={contract.HYPERPARAMETERS_CONFIG_KEY: hparams.to_dict(),
                       # As the wiring passes them (pipelines/pipeline.py): the export
                       # records both.
                       contract.TRAINING_QUERY_CONFIG_KEY: sql.base_query(),
                       contract.TRAINING_SPLITS_CONFIG_KEY: DataConfig().split_layout(),
                       **custom},
    )


@dataclasses.dataclass(frozen=True)
class TrainedModels:
    work: pathlib.Path  # analyze_and_transform's output: raw/, transform_graph/, train/, eval/
    exports: Dict[int, pathlib.Path]  # version -> exported SavedModel (not pushed anywhere)

    def fn_args(self, version: int = 1):
        """The FnArgs `version` was trained with (its directories: read them, never write)."""
        args = make_fn_args(self.work, HPARAMS, **seed_config(SEEDS[version]))
        args.serving_model_dir = str(self.exports[version])
        args.model_run_dir = str(self.work / f"run_{version}")
        return args


@pytest.fixture(scope="session")
def trained_models(tmp_path_factory: pytest.TempPathFactory) -> TrainedModels:
    """Transform once, run_fn once per version, once per test run (tests/made_once.py)."""
    made = made_once("trained_models", tmp_path_factory, _train)
    return TrainedModels(pathlib.Path(made["work"]),
                         {int(v): pathlib.Path(p) for v, p in made["exports"].items()})


@contextlib.contextmanager
def as_the_local_runner_trains() -> Iterator[None]:
    """Training as inside the local runner (pipelines/speedups): the heap frozen for the
    garbage collector (common/gc_freeze.py), whose full collections would otherwise walk every
    object of the imported stack again and again while TensorFlow traces, and AutoGraph's rule
    for tf_keras and tf.Transform (pipelines/speedups/autograph.py; test_speedups.py shows the
    results equal the stock path's)."""
    from common import gc_freeze
    from pipelines.speedups import autograph

    with gc_freeze.frozen(), autograph.graph_libraries_unconverted():
        yield


def _train(work: pathlib.Path) -> Dict[str, object]:
    """As the local runner trains (as_the_local_runner_trains)."""
    from modules import model as babyweight_model
    from tests.test_preprocessing import analyze_and_transform

    exports = {}
    with as_the_local_runner_trains():
        analyze_and_transform(train_rows(), eval_rows(), output_dir=work)
        models = TrainedModels(work, {v: work / f"export_{v}" for v in SEEDS})
        for version in SEEDS:
            babyweight_model.run_fn(models.fn_args(version))
            exports[str(version)] = str(models.exports[version])
    return {"work": str(work), "exports": exports}
