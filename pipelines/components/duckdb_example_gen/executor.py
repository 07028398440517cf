"""Executor of DuckDBExampleGen: runs each split's query on DuckDB and emits tf.Examples.

It follows TFX's QueryBasedExampleGen executor pattern (as PrestoExampleGen does). Rows stream
out of DuckDB as Arrow record batches and tfx_bsl's C++ encoder serializes them, with the feature
kinds BigQueryExampleGen gives the same columns (INT64 and BOOL -> int64_list, FLOAT64 ->
float_list, STRING -> bytes_list, NULL -> an empty Feature).
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import pathlib
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx_bsl.coders import example_coder

from common.errors import DataValidationError
from pipelines import read_progress
from pipelines.components.duckdb_example_gen import query_memory
from pipelines.components.duckdb_example_gen import shuffle as shuffle_order
from pipelines.prefetch import prefetched
from warehouse import engine, sql

ROWS_PER_BATCH = 65_536
# Files per split, the shuffled rows dealt out in turn: Beam's multi_processing workers (and
# the Trainer's parallel reads) each take whole files, so one file would keep one core busy.
SHARDS_PER_SPLIT = 4
# DuckDB/Arrow column kinds and the BigQuery type BigQueryExampleGen would see for them.
BIGQUERY_TYPE_OF_ARROW = (
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_integer, "INTEGER"),
    (pa.types.is_floating, "FLOAT"),
    (pa.types.is_decimal, "FLOAT"),  # DuckDB's type for literals and some CSV columns
    (pa.types.is_string, "STRING"),
    (pa.types.is_large_string, "STRING"),
)
_ARROW_VALUE_TYPE = {"BOOLEAN": pa.int64(), "INTEGER": pa.int64(), "FLOAT": pa.float32(),
                     "STRING": pa.binary()}

# babyweight.* lines are shown by the runner's log filter (common/logs.py): progress a person
# follows in a terminal or a log file, one line per step, nothing rewritten in place.
progress = logging.getLogger("babyweight.example_gen")
PROGRESS_EVERY_ROWS = 1_000_000


class MissingColumnError(DataValidationError):
    """The warehouse table lacks a column the query reads."""


class EmptySplitError(DataValidationError):
    """A split's query returned no rows."""


def bigquery_type(arrow_type: pa.DataType) -> str:
    """The BigQuery column type a query result column of `arrow_type` corresponds to."""
    for predicate, name in BIGQUERY_TYPE_OF_ARROW:
        if predicate(arrow_type):
            return name
    raise TypeError(
        f"column type {arrow_type} has no tf.Example feature kind; cast it to BIGINT, DOUBLE, "
        "VARCHAR or BOOLEAN in the query"
    )


def to_feature_lists(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Each scalar column as a one-value list column (NULL -> null list), the encoder's input."""
    offsets = pa.array(np.arange(batch.num_rows + 1, dtype=np.int32))
    columns = []
    for column in batch.columns:
        values = column.cast(_ARROW_VALUE_TYPE[bigquery_type(column.type)])
        mask = pc.is_null(values) if values.null_count else None
        columns.append(pa.ListArray.from_arrays(offsets, values, mask=mask))
    return pa.RecordBatch.from_arrays(columns, batch.schema.names)


def warehouse_config(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """The component's custom_config (a packed Struct) as a dict."""
    custom_config = example_gen_pb2.CustomConfig()
    json_format.Parse(exec_properties["custom_config"], custom_config)
    struct = struct_pb2.Struct()
    custom_config.custom_config.Unpack(struct)
    return json_format.MessageToDict(struct)


def serialized_batches(database: str, source: Optional[str], bigquery_sql: str,
                       shuffle: bool) -> Iterator[List[bytes]]:
    """The query's rows as batches of serialized tf.Examples, DuckDB's memory capped
    (query_memory.py) on either path.

    With `shuffle` the rows come in an order fixed by a hash of each row (DuckDB's
    `ORDER BY hash(row)`, sorted in bounded chunks by shuffle.py): training reads files in
    order, and the query's own order (all known-sex rows, then all the augmented copies) would
    bias every epoch's first steps.
    """
    with query_memory.bounded_connection(database, source) as connection, \
            contextlib.ExitStack() as spool:
        statement = sql.to_duckdb(bigquery_sql)
        if shuffle:
            statement = shuffle_order.keyed(statement)
        reader = connection.execute(statement).fetch_record_batch(ROWS_PER_BATCH)
        batches = reader
        if shuffle:  # closed here, not when collected: its spool files go before the connection
            batches = spool.enter_context(contextlib.closing(
                shuffle_order.shuffled(reader, ROWS_PER_BATCH)))
        encoder = example_coder.RecordBatchToExamplesEncoder()
        for batch in batches:
            yield encoder.encode(to_feature_lists(batch))


class _ReadQuery(beam.DoFn):
    """Runs one BigQuery-dialect query on DuckDB and yields serialized tf.Examples."""

    def __init__(self, database: str, source: Optional[str]):
        self._database = database
        self._source = source

    def process(self, bigquery_sql: str) -> Iterator[bytes]:
        for batch in serialized_batches(self._database, self._source, bigquery_sql, False):
            yield from batch


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _DuckDBToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    """TFX's generic path: one query's examples as a PCollection, for hash-partitioned splits."""
    config = warehouse_config(exec_properties)
    return (pipeline
            | "Query" >> beam.Create([split_pattern])
            | "ReadFromDuckDB" >> beam.ParDo(_ReadQuery(config["database"],
                                                        config.get("source"))))


class _WriteSplits(beam.DoFn):
    """Runs every split's query and writes its examples as gzipped TFRecords, side by side.

    One element for all splits instead of one per row: Beam's per-record reshuffle and write
    cost more than the query and the encoding together on a small machine. Each split is
    SHARDS_PER_SPLIT files, for the readers that split their work by file. The splits are
    written in threads, and each split's next batch is queried and encoded while the last one
    is written (DuckDB, tfx_bsl's encoder and TF's writer all run outside the GIL). GZIP level 1
    writes faster than the default level 6, for somewhat larger files that read as fast (what
    each saved: the README's "Pipeline speed").
    """

    def __init__(self, database: str, source: Optional[str]):
        self._database = database
        self._source = source
        self._rows = beam.metrics.Metrics.counter("duckdb_example_gen", "num_instances")

    def process(self, splits: Tuple[Tuple[str, str, str], ...]) -> Iterator[Tuple[str, int]]:
        with concurrent.futures.ThreadPoolExecutor(len(splits)) as pool:
            for name, rows in pool.map(self._write_split, splits):
                self._rows.inc(rows)  # here: Beam's metrics belong to the bundle's thread
                beam.metrics.Metrics.counter(read_progress.SPLIT_ROWS_NAMESPACE, name).inc(rows)
                yield name, rows

    def _write_split(self, split: Tuple[str, str, str]) -> Tuple[str, int]:
        import tensorflow as tf

        name, bigquery_sql, split_uri = split
        started = time.monotonic()
        tf.io.gfile.makedirs(split_uri)
        rows = 0
        options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=1)
        with contextlib.ExitStack() as files:
            writers = [files.enter_context(tf.io.TFRecordWriter(path, options=options))
                       for path in shard_paths(split_uri)]
            for batch in prefetched(serialized_batches(self._database, self._source,
                                                       bigquery_sql, True)):
                for index, record in enumerate(batch, rows):
                    writers[index % len(writers)].write(record)
                before, rows = rows, rows + len(batch)
                if rows // PROGRESS_EVERY_ROWS > before // PROGRESS_EVERY_ROWS:
                    progress.info("ExampleGen split %s: %d rows written (%.0f s)", name, rows,
                                  time.monotonic() - started)
        elapsed = max(time.monotonic() - started, 1e-9)
        progress.info("ExampleGen split %s: %d examples in %.1f s (%.0f/s)", name, rows,
                      elapsed, rows / elapsed)
        return name, rows


def shard_paths(split_uri: str) -> List[str]:
    """The split's SHARDS_PER_SPLIT files, named as TFX's own ExampleGen names its shards."""
    return [os.path.join(split_uri, f"{write_split.DEFAULT_FILE_NAME}-{index:05d}-of-"
                                    f"{SHARDS_PER_SPLIT:05d}.gz")
            for index in range(SHARDS_PER_SPLIT)]


def check_queries_bind(database: str, source: Optional[str], queries: List[str]) -> None:
    """Fails fast, before Beam starts, when the data lacks a column a query reads."""
    connection = engine.connect(pathlib.Path(database), source)
    try:
        for bigquery_sql in queries:
            try:
                connection.execute("DESCRIBE " + sql.to_duckdb(bigquery_sql))
            except duckdb.BinderException as error:
                raise MissingColumnError(
                    "The natality data lacks a column the query reads, so no examples were "
                    f"made: {error}. Export the table with every column that "
                    f"{sql.QUERY_FILE.name} reads."
                ) from error
    finally:
        connection.close()


def stop_on_empty_splits(splits: List[Tuple[str, str, str]]) -> None:
    """A split without examples stops the run here, not as a crash in Transform or Trainer."""
    import tensorflow as tf

    empty = []
    for name, _, split_uri in splits:
        files = tf.io.gfile.glob(os.path.join(split_uri, "*.gz"))
        records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(1)
        if not any(True for _ in records):
            empty.append(name)
    if empty:
        raise EmptySplitError(
            f"The {', '.join(empty)} split{'s have' if len(empty) > 1 else ' has'} no rows left "
            "after the query's filters (its hashmonth buckets, the sample and "
            f"{sql.QUERY_FILE.name}'s WHERE clause); the data holds too few months or rows.")


class Executor(BaseExampleGenExecutor):
    """Generic TFX ExampleGen executor over DuckDB; split patterns are BigQuery SQL."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        config = warehouse_config(exec_properties)
        input_config = example_gen_pb2.Input()
        json_format.Parse(exec_properties["input_config"], input_config)
        check_queries_bind(config["database"], config.get("source"),
                           [split.pattern for split in input_config.splits])
        output_config = example_gen_pb2.Output()
        json_format.Parse(exec_properties["output_config"], output_config)
        if output_config.split_config.splits:
            # Hash-partitioned output splits: TFX's generic path, record by record.
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._write_input_splits(input_config, output_dict, exec_properties, config)

    def _write_input_splits(self, input_config: example_gen_pb2.Input,
                            output_dict: Dict[str, List[Any]], exec_properties: Dict[str, Any],
                            config: Dict[str, Any]) -> None:
        """One output split per input split, written straight from the query's batches."""
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        names = [split.name for split in input_config.splits]
        examples.split_names = artifact_utils.encode_split_names(names)
        splits = [(split.name, split.pattern,
                   artifact_utils.get_split_uri([examples], split.name))
                  for split in input_config.splits]
        with self._make_beam_pipeline() as pipeline:
            _ = (pipeline
                 | "Splits" >> beam.Create([tuple(splits)])
                 | "QueryAndWrite" >> beam.ParDo(_WriteSplits(config["database"],
                                                              config.get("source"))))
        read_progress.record_split_rows(examples, pipeline.result)
        stop_on_empty_splits(splits)
        examples_utils.set_payload_format(
            examples, exec_properties.get("output_data_format",
                                          example_gen_pb2.FORMAT_TF_EXAMPLE))
        examples_utils.set_file_format(
            examples, write_split.to_file_format_str(
                exec_properties.get("output_file_format",
                                    example_gen_pb2.FORMAT_TFRECORDS_GZIP)))

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _DuckDBToExample
