"""Model quality on the same eval split: this pipeline's model vs predicting the mean vs GBT.

Generates the synthetic warehouse, runs the whole local pipeline on it (default
hyperparameters), and fits two references on the very same train split read from the same
query: the train mean, and scikit-learn's HistGradientBoostingRegressor on the raw features.
All are scored on the eval split, beside the generator's irreducible error (the RMSE floor).

    python -m benchmarks.model_quality --rows 100000
"""
from __future__ import annotations


import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import markdown_table, publish  # noqa: E402
from common.config import setting  # noqa: E402
from modules import features  # noqa: E402
from common import logs  # noqa: E402
from pipelines.config import DataConfig  # noqa: E402

log = logging.getLogger("babyweight.benchmarks")


@dataclasses.dataclass(frozen=True)
class ModelQualityConfig:
    """The synthetic warehouse the models are trained and scored on."""

    rows: int = setting(100_000, "raw natality rows to generate")
    seed: int = setting(42, "generator seed")


def read_splits(database: pathlib.Path) -> Dict[str, pd.DataFrame]:
    from warehouse import engine, sql

    data = DataConfig()
    connection = engine.connect(database)
    return {name: connection.execute(sql.to_duckdb(statement)).df()
            for name, statement in sql.split_queries(
                sql.base_query(), data.split_buckets(), data.hash_buckets).items()}


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((truth - predicted) ** 2)))


def gbt_rmse(train: pd.DataFrame, evaluation: pd.DataFrame) -> float:
    from sklearn.ensemble import HistGradientBoostingRegressor

    def encode(frame: pd.DataFrame) -> np.ndarray:
        columns = []
        for feature in features.FEATURES:
            values = frame[feature.name]
            if isinstance(feature, features.CategoricalFeature):
                values = values.map({v: i for i, v in enumerate(feature.vocabulary)})
            columns.append(values.to_numpy(dtype=float))
        return np.column_stack(columns)

    categorical = [isinstance(f, features.CategoricalFeature) for f in features.FEATURES]
    model = HistGradientBoostingRegressor(categorical_features=categorical, max_iter=300,
                                          early_stopping=True, random_state=0)
    model.fit(encode(train), train[features.LABEL_KEY].to_numpy())
    return rmse(evaluation[features.LABEL_KEY].to_numpy(), model.predict(encode(evaluation)))


def pipeline_rmse(database: pathlib.Path, work: pathlib.Path) -> float:
    import local_runner

    code = local_runner.main([
        "--database", str(database), "--pipeline-root", str(work / "root"),
        "--metadata-path", str(work / "metadata.sqlite"), "--reports-dir", str(work / "reports"),
        "--serving-dir", str(work / "serving" / "babyweight")])
    if code not in (0, 3):
        raise RuntimeError(f"the pipeline failed with exit code {code}")
    (decision,) = (work / "reports").glob("*/push.json")
    return float(json.loads(decision.read_text())["eval_rmse"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    config, output = harness.parse("model_quality", __doc__, argv, ModelQualityConfig)
    logs.setup()
    from warehouse import generator

    with tempfile.TemporaryDirectory(prefix="babyweight-quality-") as tmp:
        work = pathlib.Path(tmp)
        database = work / "natality.duckdb"
        report = generator.generate(database, rows=config.rows, seed=config.seed)
        splits = read_splits(database)
        train, evaluation = splits["train"], splits["eval"]
        truth = evaluation[features.LABEL_KEY].to_numpy()
        results = {"predict the train mean": rmse(truth, np.full_like(
            truth, train[features.LABEL_KEY].mean()))}
        started = time.perf_counter()
        results["HistGradientBoostingRegressor"] = gbt_rmse(train, evaluation)
        log.info("GBT fitted in %.0f s", time.perf_counter() - started)
        results["babyweight wide-and-deep (pipeline)"] = pipeline_rmse(database, work)
    floor = report.irreducible_rmse_query
    rows = [[name, f"{value:.4f}", f"{100 * (value / floor - 1):+.1f}%"]
            for name, value in results.items()]
    rows.append(["irreducible error (generator's true mean)", f"{floor:.4f}", "+0.0%"])
    table = markdown_table(["model", "eval RMSE (lb)", "vs floor"], rows)
    table = (f"{config.rows:,} raw rows (seed {config.seed}); train {len(train):,} and eval "
             f"{len(evaluation):,} examples from the same query and split.\n\n{table}")
    records = [{"model": r[0], "eval_rmse": float(r[1])} for r in rows]
    publish("model_quality", table, records, write=output.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
