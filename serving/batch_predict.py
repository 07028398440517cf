"""`python -m serving.batch_predict`: batch prediction with Beam's RunInference.

    .venv/bin/python -m serving.batch_predict --model-dir serving_model/babyweight \\
        --input births.jsonl --output predictions.jsonl
    .venv/bin/python -m serving.batch_predict --warehouse data/natality.duckdb --split test \\
        --output predictions.csv

    .venv/bin/python -m serving.batch_predict --source 'exports/natality-*.parquet' \\
        --output predictions.csv

Input, one of:
  --input     a JSON-lines file (one object per line) or a CSV file with a header (.csv or
              .csv.gz), rows in the model's spellings or the natality table's own (plurality
              1..5, is_male true/false): serving.instances describes the rule, which
              local_predict shares.
  --warehouse the DuckDB warehouse's natality table, or
  --source    your export of it (CSV or Parquet files, as local_runner.py --source reads):
              both through the training query's own row mapping (warehouse.sql.scoring_query),
              each row once (no "no ultrasound" copies); a row the query's WHERE would drop is
              rejected naming the condition. --split keeps one split, cut by the buckets the
              version was trained with: only rows that pass the query's filters, as the
              pipeline's split.
The training query and split buckets are the ones the version was trained with
(serving/training_query.py: its export records them), so table values mean what they meant in
training after the query file changed, and its eval split is the rows it held out whatever
split flags trained it.

Output, in input order, one row per accepted row: the key (the input's `key` column, else the
0-based row number), the features as the model saw them, the label (weight_pounds) when the
input has one, and predicted_weight_pounds. JSON lines, or CSV with a header for a .csv output.
Rejected rows go to <output>.errors.jsonl ({"key", "line" for files, "error"}), in input order.
Both files are written whole or not at all, each replacing the file of its name (an --output
or .errors.jsonl that is a directory is refused before the run starts); two runs given one
--output at once each write whole files of their own rows, the later rename winning. The
command prints how many rows were read, predicted and rejected; the exit code is 0 when every
row was predicted (or the rejected share is within --max-error-rate), 2 when more were
rejected, 1 for any other failure (also when the --request-log-dir log dropped rows: a full
disk or an unwritable directory). The request log's rows become readable only once the
predictions file is written, so a killed run and its rerun log each row once
(serving/batch_log.py).

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

`--warehouse` and `--source` read local files with DuckDB, so they are for local runs only.
"""
from __future__ import annotations

import atexit
import csv
import dataclasses
import gc
import io
import os
import sys
import warnings
import weakref
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

# Google client libraries warn about Python 3.10 on import; nothing a user of this can act on.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")

import apache_beam as beam  # noqa: E402
from apache_beam.ml.inference.base import (KeyedModelHandler, ModelHandler,  # noqa: E402
                                           PredictionResult, RunInference)
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from modules import features  # noqa: E402
from common import files, logs  # noqa: E402
from common.config import command_parser, from_flags, setting  # noqa: E402
from common.errors import WarehouseBusyError  # noqa: E402
from serving import batch_log, batch_output, instances, validation  # noqa: E402
from serving.batch_input import (Read, check_readable, is_csv, read_file,  # noqa: E402
                                 read_query_element, scoring_query)
from serving.settings import PushedVersionConfig  # noqa: E402
from serving.training_query import TrainingData  # noqa: E402

KEY_COLUMN = instances.KEY_COLUMN
ERRORS_SUFFIX = ".errors.jsonl"
PREDICTION_PREFIX = "predicted_"
PREDICTION_COLUMN = PREDICTION_PREFIX + features.LABEL_KEY
CSV_COLUMNS = (KEY_COLUMN, *features.FEATURE_NAMES, features.LABEL_KEY, PREDICTION_COLUMN)
METRICS_NAMESPACE = batch_log.METRICS_NAMESPACE
ROWS_READ = "rows_read"


@dataclasses.dataclass(frozen=True)
class BatchPredictConfig(PushedVersionConfig):
    """What to predict, with which model version, and where the predictions go."""

    input: Optional[str] = setting(
        None, "Rows: a .jsonl/.json (one object per line) or .csv/.csv.gz (with a header) file; "
        "local or gs://. Model spellings or the table's own (plurality 1..5, is_male true/false).")
    warehouse: Optional[str] = setting(
        None, "Instead of --input: a DuckDB warehouse file; its rows go through the training "
        "query's mapping and filters, once each.")
    source: Optional[str] = setting(
        None, "Instead of --input: your export of the natality table (CSV or Parquet files or "
        "a glob, as local_runner.py --source), through the training query like --warehouse.")
    split: Optional[str] = setting(
        None, "With --warehouse/--source: only this split (train, eval or test, cut by the "
        "buckets the version was trained with); default: every row.")
    limit: int = setting(0, "Read at most this many rows; 0 = all.", minimum=0)
    output: Optional[str] = setting(
        None, "Predictions file: .csv writes CSV, anything else JSON lines. Required.")
    max_error_rate: float = setting(
        0.0, "Fraction of rows that may be rejected with exit code 0 (0 = none).", minimum=0.0,
        maximum=1.0)
    batch_size: int = setting(256, "Most instances per model call.", minimum=1)
    request_log_dir: Optional[str] = setting(
        None, "Also write each prediction to this request log (the server's format, which "
        "`python -m monitoring --logs` reads); local paths only.")
    request_log_sample_rate: float = setting(
        1.0, "Share of rows the request log keeps.", minimum=0, maximum=1)
    verbose: bool = setting(False, "Show Beam's and TensorFlow's own logs.")


def decide(element: Read, training: TrainingData) -> Union[instances.Accepted, instances.Rejected]:
    beam.metrics.Metrics.counter(METRICS_NAMESPACE, ROWS_READ).inc()
    return instances.decide(*element, query=training.query)


# ------------------------------------------------------------------------------------------------
# Inference, writing
# ------------------------------------------------------------------------------------------------

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


def _keyed(accepted: instances.Accepted) -> Tuple[Tuple[int, Any, Any], Dict[str, Any]]:
    """RunInference's (key, example); the key carries what the output row needs besides."""
    return (accepted.index, accepted.key, accepted.label), accepted.instance


def prediction_record(element: Tuple[Tuple[int, Any, Any], PredictionResult]
                      ) -> Tuple[int, Dict[str, Any]]:
    """(row index, output row): key, features as the model saw them, label, prediction."""
    (index, key, label), result = element
    record: Dict[str, Any] = {KEY_COLUMN: key, **result.example}
    if label is not None:
        record[features.LABEL_KEY] = label
    # str() of a float32 is its shortest round-trip decimal: 7.6761928, not 7.676192760467529.
    record.update({PREDICTION_PREFIX + name: float(str(value))
                   for name, value in result.inference.items()})
    return index, record


def _json_line(record: Dict[str, Any]) -> str:
    from serving.encoding import encode_json

    return encode_json(record).decode()


def _csv_line(record: Dict[str, Any], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(
        ["" if record.get(c) is None else record[c] for c in columns])
    return buffer.getvalue()


def _output_line(element: Tuple[int, Dict[str, Any]], as_csv: bool) -> Tuple[int, str]:
    index, record = element
    return index, (_csv_line(record, CSV_COLUMNS) if as_csv else _json_line(record))


def _error_line(rejected: instances.Rejected) -> Tuple[int, str]:
    return rejected.index, _json_line(rejected.record())


def build_pipeline(pipeline: beam.Pipeline, config: BatchPredictConfig, version: int,
                   path: str, training: TrainingData, run: str) -> None:
    """Rows read, decided by `training`'s query (the version's), predicted, written in order
    as run `run`'s parts (serving/batch_output.py)."""
    assert config.output
    if config.input:
        reader = beam.FlatMap(read_file, config.limit)
        start: Any = config.input
    else:
        reader = beam.FlatMap(read_query_element, config.warehouse, config.source,
                              config.split, config.limit, training)
        start = "query"
    decided = (pipeline
               | "Start" >> beam.Create([start])
               | "Read" >> reader
               | "Spread" >> beam.Reshuffle()
               | "Decide" >> beam.Map(decide, training))
    accepted, rejected = decided | "Split" >> beam.Partition(
        lambda d, _: 0 if isinstance(d, instances.Accepted) else 1, 2)
    handler = KeyedModelHandler(SavedModelHandler(version, path,
                                                  max_batch_size=config.batch_size))
    records = (accepted
               | "Key" >> beam.Map(_keyed)
               | "RunInference" >> RunInference(handler)
               | "Record" >> beam.Map(prediction_record))
    if config.request_log_dir:
        records = batch_log.logged(records, config, version, run, PREDICTION_COLUMN)
    _ = (records
         | "Format" >> beam.Map(_output_line, is_csv(config.output))
         | "Write" >> batch_output.WriteInOrder(config.output, run))
    _ = (rejected
         | "FormatErrors" >> beam.Map(_error_line)
         | "WriteErrors" >> batch_output.WriteInOrder(config.output + ERRORS_SUFFIX, run))


def run(config: BatchPredictConfig, version: int, path: str, training: TrainingData,
        beam_args: List[str]) -> int:
    """Runs the pipeline, assembles both files, prints the counts; returns the exit code."""
    assert config.output
    errors_path, run = config.output + ERRORS_SUFFIX, batch_output.new_run_id()
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args, save_main_session=False))
    build_pipeline(pipeline, config, version, path, training, run)
    try:
        result = pipeline.run()
        result.wait_until_finish()
    except BaseException:
        for output in (config.output, errors_path):
            batch_output.remove_parts(output, run)
        batch_log.discard(config, run)
        raise
    header = ",".join(CSV_COLUMNS) if is_csv(config.output) else None
    predicted = batch_output.assemble(config.output, run, header)
    rejected = batch_output.assemble(errors_path, run)
    batch_log.publish(config, run)
    read = batch_log.counted(result, ROWS_READ)
    print(f"Read {read} rows: {predicted} predicted by version {version} -> {config.output}, "
          f"{rejected} rejected -> {errors_path}")
    if read != predicted + rejected:
        print(f"error: {read - predicted - rejected} rows read were neither predicted nor "
              "rejected", file=sys.stderr)
        return 1
    problem = instances.too_many_rejected(read, rejected, config.max_error_rate)
    if problem:
        print(f"error: {problem}; the reasons are in {errors_path}", file=sys.stderr)
        return instances.EXIT_REJECTED
    return batch_log.complete(config, result)


def _unloadable(version: int, path: str) -> Optional[str]:
    """Why the version does not load, or None: tried here, where the message is one line,
    rather than first in a Beam worker, whose failure is a traceback."""
    import gc

    from serving.model_store import cannot_load, load_version

    try:
        load_version(version, path)
    except Exception as error:  # noqa: BLE001 - a version that does not load is a message
        return cannot_load(version, path, error)
    finally:
        gc.collect()  # the run's workers load their own copy
    return None


def _unwritable_output(output: str, logged: bool) -> Optional[str]:
    """Why --output (or a file written beside it) cannot be replaced by this run's file, else
    None: checked before any work, since a directory there is not a file to replace."""
    if output.endswith(("/", os.sep)):
        return f"--output {output} names a directory; give the predictions file's path"
    companions = [ERRORS_SUFFIX] + ([batch_log.ATTEMPTS_SUFFIX] if logged else [])
    for path in [output] + [output + suffix for suffix in companions]:
        problem = files.unusable_file(path)
        if problem:
            return f"--output {output} cannot be written: {problem}"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    parser = command_parser("python -m serving.batch_predict", __doc__, BatchPredictConfig)
    args, beam_args = parser.parse_known_args(argv)
    config = from_flags(BatchPredictConfig, args)
    if not config.output:
        parser.error("--output is required")
    problem = _unwritable_output(config.output, bool(config.request_log_dir))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if "://" not in config.output:
        # Beam's local filesystem cannot create a file named without a directory.
        config = dataclasses.replace(config, output=os.path.abspath(config.output))
    if sum(bool(v) for v in (config.input, config.warehouse, config.source)) != 1:
        parser.error("give exactly one of --input, --warehouse and --source")
    if config.split and config.input:
        parser.error("--split needs --warehouse or --source")
    from warehouse.preflight import read_files

    for output in (config.output, config.output + ERRORS_SUFFIX):
        read = files.overwritten_input(output, config.input, config.warehouse,
                                       sources=[config.source], listing=read_files)
        if read:
            parser.error(f"{output} is what it reads ({read}): writing it would replace the "
                         "input; give --output another path")
    logs.setup(config.verbose)
    from serving import training_query
    from serving.model_store import resolve_version

    try:
        version, path = resolve_version(config.model_dir, config.version)
        training = training_query.of_version(version, path, with_splits=bool(config.split))
        if not config.input:
            scoring_query(config.split, 0, training)  # a wrong --split fails here, not in a worker
        if config.split:
            lo, hi = training.split_buckets[config.split]
            print(f"Split {config.split}: rows with ABS(MOD(hashmonth, {training.hash_buckets})) "
                  f"in [{lo}, {hi}), as version {version} was trained", file=sys.stderr)
        check_readable(config.input, config.warehouse, config.source, config.split, training)
    except (FileNotFoundError, ValueError, WarehouseBusyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    problem = _unloadable(version, path)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    try:
        with batch_output.exclusive(config.output, config.output + ERRORS_SUFFIX,
                                    config.output + batch_log.ATTEMPTS_SUFFIX), \
                batch_log.held(config.request_log_dir):
            return run(config, version, path, training, beam_args)
    except batch_output.OutputBusy as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except WarehouseBusyError as error:  # taken during the run: Beam may add its step's line
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 1
    except Exception as error:  # noqa: BLE001 - a failed run is a message and exit 1
        print(f"error: batch prediction failed: {type(error).__name__}: {error}",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
