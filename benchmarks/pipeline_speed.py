"""Times the whole local pipeline per component, beside a bare script doing the same work.

For each size the synthetic warehouse is generated, then, each in a fresh Python process:
- the pipeline: `local_runner` with a fresh pipeline root (no cache), per-component seconds
  from ML Metadata's execution times;
- the floor: a bare script without TFX or Beam — query DuckDB into memory, the same
  preprocessing in plain TensorFlow (z-scores, the declared buckets, vocabulary ids, the hashed
  cross), the same Keras model and `fit` settings, RMSE on the eval split.
The ratio pipeline / bare says what the pipeline's machinery costs. Both sides are timed from
after their imports to the end of their work; the imports ("start-up") are reported beside.
Sizes up to 1M rows run each side three times and report the median run, since the bare
script's `fit` alone varies by a third between runs on a busy 2-core machine. Both sides train
every epoch (early stopping off, the only setting changed from the defaults): with it, each side
stopped after 3 to 5 epochs at random, so the two would often not have done the same work.

    python -m benchmarks.pipeline_speed --sizes 20000 200000 2000000
"""
from __future__ import annotations


import concurrent.futures  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import markdown_table, publish, timed  # noqa: E402
from common.config import setting  # noqa: E402
from modules.hparams import HyperParameters  # noqa: E402
from common import logs  # noqa: E402

log = logging.getLogger("babyweight.benchmarks")

# The default hyperparameters, except that every epoch runs (see the module docstring).
HPARAMS = dataclasses.replace(HyperParameters(),
                              early_stopping_patience=HyperParameters().epochs)


def run_pipeline(database: pathlib.Path, work: pathlib.Path) -> Dict[str, float]:
    """Seconds per component (from ML Metadata's execution times), in total, and start-up."""
    started = time.perf_counter()
    logs.setup()
    import local_runner
    from pipelines import pipeline  # noqa: F401 - the TFX stack, imported before the clock
    from pipelines.components.duckdb_example_gen import component  # noqa: F401
    from reports import mlmd
    from tfx.orchestration.local import local_dag_runner  # noqa: F401

    startup = time.perf_counter() - started
    started = time.perf_counter()
    code = local_runner.main([
        "--database", str(database), "--pipeline-root", str(work / "root"),
        "--metadata-path", str(work / "metadata.sqlite"),
        "--reports-dir", str(work / "reports"),
        "--serving-dir", str(work / "serving" / "babyweight"), "--no-enable-cache",
        "--early-stopping-patience", str(HPARAMS.early_stopping_patience)])
    total = time.perf_counter() - started
    if code not in (0, 3):
        raise RuntimeError(f"the pipeline failed with exit code {code}")
    (run,) = mlmd.list_runs(mlmd.open_store(work / "metadata.sqlite"))
    return {**{c.node_id: c.seconds for c in run.components}, "total": total,
            "startup": startup}


def bare_floor(database: pathlib.Path) -> Dict[str, float]:
    """The same work as the pipeline, by hand, in one process: the floor."""
    started = time.perf_counter()
    logs.setup()
    import tensorflow as tf
    import tf_keras

    from modules import features, model_input, network, preprocessing
    from pipelines.speedups import autograph
    from pipelines.config import DataConfig
    from warehouse import engine, sql

    seconds: Dict[str, float] = {"startup": time.perf_counter() - started}
    data = DataConfig()
    queries = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)
    with timed(seconds, "query"):
        connection = engine.connect(database)
        train = connection.execute(sql.to_duckdb(queries["train"])).df()
        evaluation = connection.execute(sql.to_duckdb(queries["eval"])).df()
    with timed(seconds, "preprocess"):
        stats = {f.name: (train[f.name].mean(), train[f.name].std(ddof=0))
                 for f in features.NUMERIC_FEATURES}

        def transform(frame) -> Dict[str, tf.Tensor]:
            out: Dict[str, tf.Tensor] = {}
            for f in features.CATEGORICAL_FEATURES:
                lookup = {v: i for i, v in enumerate(f.vocabulary)}
                ids = frame[f.name].map(lookup).fillna(len(f.vocabulary)).to_numpy(np.int64)
                out[preprocessing.transformed_name(f.name)] = tf.constant(ids)
            for f in features.NUMERIC_FEATURES:
                values = frame[f.name].to_numpy(np.float32)
                mean, std = stats[f.name]
                out[preprocessing.transformed_name(f.name)] = tf.constant(
                    (values - mean) / std, tf.float32)
                out[preprocessing.bucket_name(f.name)] = tf.constant(
                    np.digitize(values, f.bucket_boundaries).astype(np.int64))
            out[preprocessing.CROSS_KEY] = preprocessing.cross_hash(
                *(out[preprocessing.bucket_name(f.name)]
                  for f in preprocessing.CROSSED_FEATURES))
            return out

        train_x, eval_x = transform(train), transform(evaluation)
        train_y = train[features.LABEL_KEY].to_numpy(np.float32)
        eval_y = evaluation[features.LABEL_KEY].to_numpy(np.float32)
    hparams = HPARAMS
    # The same AutoGraph rule as the local run (tf_keras left unconverted) for fit and
    # predict: without it the floor's first traces alone cost more than the pipeline's, and the
    # ratio would flatter the pipeline.
    with autograph.graph_libraries_unconverted():
        with timed(seconds, "fit"):
            keras_model = network.build_keras_model(hparams)
            # The Trainer's input shape (cache, shuffle, batch, prefetch): the floor gets the same
            # input optimizations, so the ratio measures TFX's machinery, not a slower input.
            train_ds = tf.data.Dataset.from_tensor_slices(
                (network.model_inputs(keras_model, train_x), train_y)).cache().shuffle(
                model_input.SHUFFLE_BUFFER).batch(hparams.batch_size).prefetch(tf.data.AUTOTUNE)
            eval_ds = tf.data.Dataset.from_tensor_slices(
                (network.model_inputs(keras_model, eval_x), eval_y)).cache().batch(
                hparams.batch_size).prefetch(tf.data.AUTOTUNE)
            keras_model.fit(train_ds, epochs=hparams.epochs, validation_data=eval_ds, verbose=0,
                            callbacks=[tf_keras.callbacks.EarlyStopping(
                                monitor="val_loss", patience=hparams.early_stopping_patience,
                                restore_best_weights=True)])
        with timed(seconds, "evaluate"):
            predictions = keras_model.predict(eval_ds, verbose=0).reshape(-1)
            seconds["rmse"] = float(np.sqrt(np.mean((predictions - eval_y) ** 2)))
    seconds["total"] = sum(v for k, v in seconds.items() if k not in ("rmse", "startup"))
    return seconds


def in_fresh_process(function: Callable[..., Dict[str, float]], *args: object
                     ) -> Dict[str, float]:
    """function(*args) in a new Python process: neither side inherits the other's warm state."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def median_run(runs: List[Dict[str, float]]) -> Dict[str, float]:
    """The run with the median total (a real run, so its breakdown adds up)."""
    return sorted(runs, key=lambda run: run["total"])[len(runs) // 2]


@dataclasses.dataclass(frozen=True)
class PipelineSpeedConfig:
    """The sizes both sides run at, and how often."""

    sizes: Tuple[int, ...] = harness.sizes(20_000, 200_000, 2_000_000)
    repeats: int = setting(3, "runs of each side per size up to --repeat-up-to rows; the table "
                           "shows the median run")
    repeat_up_to: int = setting(1_000_000, "larger sizes run once: they take minutes and vary "
                                "less")


COMPONENT_COLUMNS = ("DuckDBExampleGen", "StatisticsGen", "ExampleValidator", "EdaReport",
                     "Transform", "Trainer", "Evaluator", "ServingPusher")


def main(argv: Optional[Sequence[str]] = None) -> int:
    config, output = harness.parse("pipeline_speed", __doc__, argv, PipelineSpeedConfig)
    logs.setup()
    from warehouse import generator

    records: List[Dict[str, object]] = []
    for rows in config.sizes:
        runs = max(1, config.repeats) if rows <= config.repeat_up_to else 1
        with tempfile.TemporaryDirectory(prefix="babyweight-speed-") as tmp:
            work = pathlib.Path(tmp)
            database = work / "natality.duckdb"
            generator.generate(database, rows=rows, seed=3)
            pipeline_runs, bare_runs = [], []
            for run in range(runs):
                log.info("pipeline at %d raw rows (run %d of %d) ...", rows, run + 1, runs)
                pipeline_runs.append(in_fresh_process(run_pipeline, database, work / f"run{run}"))
                log.info("bare script at %d raw rows (run %d of %d) ...", rows, run + 1, runs)
                bare_runs.append(in_fresh_process(bare_floor, database))
            records.append({"raw_rows": rows, "pipeline": median_run(pipeline_runs),
                            "bare": median_run(bare_runs), "pipeline_runs": pipeline_runs,
                            "bare_runs": bare_runs})
            log.info("%s", records[-1])
    headers = ["raw rows", *COMPONENT_COLUMNS, "pipeline total s", "bare total s",
               "ratio", "bare RMSE", "runs", "start-up s (pipeline / bare)"]
    rows_out = []
    for r in records:
        p, b = r["pipeline"], r["bare"]
        rows_out.append([r["raw_rows"], *(p.get(c, 0.0) for c in COMPONENT_COLUMNS),
                         p["total"], b["total"], f"{p['total'] / b['total']:.1f}x", b["rmse"],
                         len(r["pipeline_runs"]), f"{p['startup']:.1f} / {b['startup']:.1f}"])
    table = markdown_table(headers, rows_out)
    table += ("\n\nBare script breakdown (s): " + "; ".join(
        f"{r['raw_rows']:,} rows: query {r['bare']['query']:.1f}, preprocess "
        f"{r['bare']['preprocess']:.1f}, fit {r['bare']['fit']:.1f}, evaluate "
        f"{r['bare']['evaluate']:.1f}" for r in records))
    publish("pipeline_speed", table, records, write=output.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
