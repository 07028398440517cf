"""`python -m serving.batch_predict`: batch prediction with Beam's RunInference.

    .venv/bin/python -m serving.batch_predict --model-dir serving_model/babyweight \\
        --input births.jsonl --output predictions.jsonl
    .venv/bin/python -m serving.batch_predict --warehouse data/natality.duckdb --split test \\
        --output predictions.csv

Input: a JSON-lines file (one instance object per line) or a CSV file with a header, or the
warehouse's training query (`--warehouse`, optionally one `--split`). Columns that are not
declared features are ignored, except `key`: each output row carries the input's `key` value,
or the instance's 0-based row number when there is none. Every instance is checked as the
REST server checks it (serving.validation); invalid ones go to <output>.errors.jsonl with
their key and the reason, and do not stop the job.

Output: JSON lines ({"key": ..., "weight_pounds": ...}) or, for a .csv --output, CSV with a
header; one file, rows in no particular order (join on the key).

Why a custom ModelHandler: Beam 2.61's TFModelHandlerNumpy/TFModelHandlerTensor call a Keras
model on one stacked tensor; babyweight's `serving_default` takes four named tensors (two of
strings). `SavedModelHandler` loads the SavedModel, warms it up, and calls the signature on
each batch RunInference forms.

Runs on Beam's DirectRunner by default. Any flag not listed below is a Beam pipeline option,
so the same command runs on Dataflow with the model and the files on Cloud Storage:

    --runner DataflowRunner --project PROJECT --region REGION \\
    --temp_location gs://BUCKET/tmp --staging_location gs://BUCKET/staging \\
    --setup_file ./setup.py        # ships this project's packages (serving included)
    --model-dir gs://BUCKET/serving_model/babyweight --input gs://.../births.jsonl \\
    --output gs://.../predictions.jsonl
    (optionally --machine_type n1-standard-4 --max_num_workers 10)

`--warehouse` reads a local DuckDB file, so it is for local runs only.
"""
from __future__ import annotations

import argparse
import atexit
import csv
import dataclasses
import gc
import io
import json
import os
import sys
import warnings
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Google client libraries warn about Python 3.10 on import; nothing a user of this can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

import apache_beam as beam  # noqa: E402
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler,  # noqa: E402
                                           PredictionResult, RunInference)
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from modules import features  # noqa: E402
from pipelines import logs  # noqa: E402
from pipelines.config import DataConfig, add_flags, from_flags, setting  # noqa: E402
from serving import validation  # noqa: E402
from serving.settings import DEFAULT_MODEL_DIR  # noqa: E402

KEY_COLUMN = "key"
ERRORS_SUFFIX = ".errors.jsonl"


@dataclasses.dataclass(frozen=True)
class BatchPredictConfig:
    """What to predict, with which model version, and where the predictions go."""

    model_dir: str = setting(DEFAULT_MODEL_DIR, "Directory of version directories "
                             "(the pipeline's --serving-dir); local or gs://.")
    version: Optional[int] = setting(None, "Version to use; default: the newest.")
    input: Optional[str] = setting(None, "Instances: a .jsonl/.json (one object per line) or "
                                   ".csv (with a header) file; local or gs://.")
    warehouse: Optional[str] = setting(
        None, "Instead of --input: a DuckDB warehouse file; runs the training query on it.")
    split: Optional[str] = setting(
        None, "With --warehouse: only this split of the query (train, eval or test, as the "
        "pipeline's default split buckets define them); default: every row.")
    limit: int = setting(0, "Read at most this many instances; 0 = all.")
    output: Optional[str] = setting(
        None, "Predictions file: .csv writes CSV, anything else JSON lines. Required.")
    batch_size: int = setting(256, "Most instances per model call.")
    verbose: bool = setting(False, "Show Beam's and TensorFlow's own logs.")


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------

def _numeric_or_text(text: str) -> Any:
    """A CSV cell for a numeric feature: a float when it parses, else left for validation."""
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _keyed(index: int, record: Dict[str, Any]) -> Tuple[Any, Dict[str, Any]]:
    key = record.pop(KEY_COLUMN, None)
    return (index if key is None else key), record


def read_file(path: str, limit: int = 0) -> Iterator[Tuple[Any, Any]]:
    """(key, record) per instance of a JSON-lines or CSV file."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        if path.lower().endswith(".csv"):
            numeric = {f.name for f in features.NUMERIC_FEATURES}
            records: Iterable[Any] = (
                {k: (_numeric_or_text(v) if k in numeric else v) for k, v in row.items()}
                for row in csv.DictReader(text))
        else:
            records = (_json_record(line) for line in text if line.strip())
        for index, record in enumerate(records):
            if limit and index >= limit:
                return
            yield _keyed(index, record) if isinstance(record, dict) else (index, record)


def _json_record(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as error:
        return validation.RequestError(f"malformed JSON: {error}")


def warehouse_query(split: Optional[str], limit: int = 0) -> str:
    """The training query (DuckDB dialect), whole or one split of the default buckets.

    Sorted on every column: the query's UNION ALL runs in parallel, so without an order the
    row numbers (the keys) and the rows a --limit keeps would change from run to run.
    """
    from warehouse import sql

    query = sql.base_query()
    if split is not None:
        data = DataConfig()
        buckets = data.split_buckets()
        if split not in buckets:
            raise ValueError(f"--split must be one of {', '.join(buckets)}, got {split!r}")
        query = sql.split_query(query, data.hash_buckets, buckets[split])
    ordered = f"SELECT * FROM (\n{sql.to_duckdb(query)}\n) ORDER BY ALL"
    return ordered + (f" LIMIT {int(limit)}" if limit else "")


def read_warehouse(database: str, split: Optional[str], limit: int = 0
                   ) -> Iterator[Tuple[Any, Dict[str, Any]]]:
    """(row number, row) from the warehouse query, fetched in chunks."""
    import pathlib

    from warehouse import engine

    connection = engine.connect(pathlib.Path(database))
    try:
        cursor = connection.execute(warehouse_query(split, limit))
        names = [column[0] for column in cursor.description]
        index = 0
        while True:
            chunk = cursor.fetchmany(10_000)
            if not chunk:
                return
            for values in chunk:
                yield _keyed(index, dict(zip(names, values)))
                index += 1
    finally:
        connection.close()


# ------------------------------------------------------------------------------------------------
# Checking, inference, writing
# ------------------------------------------------------------------------------------------------

class Validate(beam.DoFn):
    """Canonical instance (main output) or (key, reason) on the 'invalid' output."""

    INVALID = "invalid"

    def process(self, element: Tuple[Any, Any]) -> Iterator[Any]:
        key, record = element
        try:
            if isinstance(record, validation.RequestError):
                raise record
            if not isinstance(record, dict):
                raise validation.RequestError(
                    f"expected an object of feature values, got {type(record).__name__}")
            instance = {name: record[name] for name in features.FEATURE_NAMES if name in record}
            columns, _ = validation.feature_columns_from_instances([instance], 1)
        except validation.RequestError as error:
            message = error.message.replace("instances[0]", "instance")
            yield beam.pvalue.TaggedOutput(self.INVALID, {"key": key, "error": message})
            return
        yield key, {name: values[0] for name, values in columns.items()}


def _release(model_ref: "weakref.ref[Any]") -> None:
    """Frees a model Beam's cache still holds before interpreter teardown; freed during it,
    TensorFlow's functions print 'Exception ignored in AtomicFunction.__del__'."""
    model = model_ref()
    if model is not None:
        model.signatures.clear()
        model.loaded = None
        gc.collect()


class SavedModelHandler(ModelHandler[Dict[str, Any], Dict[str, Any], Any]):
    """RunInference handler for a SavedModel signature that takes named feature tensors."""

    def __init__(self, version: int, path: str,
                 signature_name: str = validation.DEFAULT_SIGNATURE,
                 max_batch_size: int = 256) -> None:
        super().__init__()
        self._version = version
        self._path = path
        self._signature_name = signature_name
        self._max_batch_size = max_batch_size

    def load_model(self) -> Any:
        from serving.model_store import load_version

        model = load_version(self._version, self._path)
        atexit.register(_release, weakref.ref(model))
        return model

    def run_inference(self, batch: Sequence[Dict[str, Any]], model: Any,
                      inference_args: Optional[Dict[str, Any]] = None
                      ) -> Iterable[PredictionResult]:
        columns = {name: [example[name] for example in batch] for name in features.FEATURE_NAMES}
        outputs = model.predict(self._signature_name, columns)
        return [PredictionResult(example, {name: values[i] for name, values in outputs.items()},
                                 model_id=self._path)
                for i, example in enumerate(batch)]

    def batch_elements_kwargs(self) -> Dict[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": self._max_batch_size}

    def get_metrics_namespace(self) -> str:
        return "BabyweightRunInference"


def prediction_record(element: Tuple[Any, PredictionResult]) -> Dict[str, Any]:
    key, result = element
    # str() of a float32 is its shortest round-trip decimal: 7.6761928, not 7.676192760467529.
    return {"key": key, **{name: float(str(value)) for name, value in result.inference.items()}}


def _json_line(record: Dict[str, Any]) -> str:
    from serving.encoding import encode_json

    return encode_json(record).decode()


def _csv_line(record: Dict[str, Any], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([record.get(c, "") for c in columns])
    return buffer.getvalue()


def build_pipeline(pipeline: beam.Pipeline, config: BatchPredictConfig, version: int,
                   path: str) -> None:
    if config.warehouse:
        reader = beam.FlatMap(read_warehouse, config.split, config.limit)
        source = config.warehouse
    else:
        reader = beam.FlatMap(read_file, config.limit)
        source = config.input
    checked = (pipeline
               | "Source" >> beam.Create([source])
               | "Read" >> reader
               | "Spread" >> beam.Reshuffle()
               | "Validate" >> beam.ParDo(Validate()).with_outputs(Validate.INVALID,
                                                                   main="valid"))
    handler = KeyedModelHandler(SavedModelHandler(version, path,
                                                  max_batch_size=config.batch_size))
    records = (checked.valid
               | "RunInference" >> RunInference(handler)
               | "Record" >> beam.Map(prediction_record))
    assert config.output
    if config.output.lower().endswith(".csv"):
        columns = [KEY_COLUMN, features.LABEL_KEY]
        lines = records | "CSV" >> beam.Map(_csv_line, columns)
        header: Optional[str] = ",".join(columns)
    else:
        lines = records | "JSON" >> beam.Map(_json_line)
        header = None
    _ = lines | "Write" >> beam.io.WriteToText(config.output, shard_name_template="",
                                               header=header)
    _ = (checked[Validate.INVALID]
         | "ErrorJSON" >> beam.Map(_json_line)
         | "WriteErrors" >> beam.io.WriteToText(config.output + ERRORS_SUFFIX,
                                                shard_name_template=""))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.batch_predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, BatchPredictConfig)
    args, beam_args = parser.parse_known_args(argv)
    config = from_flags(BatchPredictConfig, args)
    if not config.output:
        parser.error("--output is required")
    if bool(config.input) == bool(config.warehouse):
        parser.error("give exactly one of --input and --warehouse")
    if config.split and not config.warehouse:
        parser.error("--split needs --warehouse")
    logs.setup(config.verbose)
    from serving.model_store import resolve_version

    try:
        version, path = resolve_version(config.model_dir, config.version)
        if config.warehouse:
            warehouse_query(config.split)  # a wrong --split fails here, not in a worker
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    options = PipelineOptions(beam_args, save_main_session=False)
    with beam.Pipeline(options=options) as pipeline:
        build_pipeline(pipeline, config, version, path)
    print(f"Predictions of version {version}: {config.output} "
          f"(invalid instances: {config.output + ERRORS_SUFFIX})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
