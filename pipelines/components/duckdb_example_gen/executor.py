"""Executor of DuckDBExampleGen: runs each split's query on DuckDB and emits tf.Examples.

It follows TFX's QueryBasedExampleGen executor pattern (as PrestoExampleGen does). Rows stream
out of DuckDB as Arrow record batches and tfx_bsl's C++ encoder serializes them, with the feature
kinds BigQueryExampleGen gives the same columns (INT64 and BOOL -> int64_list, FLOAT64 ->
float_list, STRING -> bytes_list, NULL -> an empty Feature).
"""
from __future__ import annotations

import logging
import pathlib
import time
from typing import Any, Dict, Iterator, List, Optional

import apache_beam as beam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import json_format, struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.proto import example_gen_pb2
from tfx_bsl.coders import example_coder

from pipelines.errors import DataValidationError
from warehouse import engine, sql

ROWS_PER_BATCH = 65_536
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


class MissingColumnError(DataValidationError):
    """The warehouse table lacks a column the query reads."""


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


class _ReadQuery(beam.DoFn):
    """Runs one BigQuery-dialect query on DuckDB and yields serialized tf.Examples."""

    def __init__(self, database: str, source: Optional[str]):
        self._database = database
        self._source = source
        self._rows = beam.metrics.Metrics.counter("duckdb_example_gen", "rows")

    def process(self, bigquery_sql: str) -> Iterator[bytes]:
        connection = engine.connect(pathlib.Path(self._database), self._source)
        try:
            started = time.monotonic()
            reader = connection.execute(sql.to_duckdb(bigquery_sql)).fetch_record_batch(
                ROWS_PER_BATCH)
            encoder = example_coder.RecordBatchToExamplesEncoder()
            rows = 0
            for batch in reader:
                examples = encoder.encode(to_feature_lists(batch))
                rows += len(examples)
                self._rows.inc(len(examples))
                yield from examples
            elapsed = max(time.monotonic() - started, 1e-9)
            logging.info("DuckDBExampleGen: %d rows in %.1f s (%.0f rows/s)", rows, elapsed,
                         rows / elapsed)
        finally:
            connection.close()


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(bytes)
def _DuckDBToExample(  # pylint: disable=invalid-name
    pipeline: beam.Pipeline, exec_properties: Dict[str, Any], split_pattern: str
) -> beam.pvalue.PCollection:
    config = warehouse_config(exec_properties)
    return (pipeline
            | "Query" >> beam.Create([split_pattern])
            | "ReadFromDuckDB" >> beam.ParDo(_ReadQuery(config["database"],
                                                        config.get("source"))))


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


class Executor(BaseExampleGenExecutor):
    """Generic TFX ExampleGen executor over DuckDB; split patterns are BigQuery SQL."""

    def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
           exec_properties: Dict[str, Any]) -> None:
        config = warehouse_config(exec_properties)
        input_config = example_gen_pb2.Input()
        json_format.Parse(exec_properties["input_config"], input_config)
        check_queries_bind(config["database"], config.get("source"),
                           [split.pattern for split in input_config.splits])
        super().Do(input_dict, output_dict, exec_properties)

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _DuckDBToExample
