"""DuckDBExampleGen's driver: the span driver reading the local warehouse's spans."""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List

from google.protobuf import json_format
from tfx.proto import example_gen_pb2

from pipelines.components.duckdb_example_gen.executor import check_queries_bind, warehouse_config
from pipelines.components.span_driver import SpanDriver
from warehouse import spans


class DuckDBSpanDriver(SpanDriver):
    """Runs spans.sql on the DuckDB file (or the user's export) the executor will read."""

    def read_spans(self, exec_properties: Dict[str, Any]) -> List[spans.Span]:
        config = warehouse_config(exec_properties)
        input_config = example_gen_pb2.Input()
        json_format.Parse(exec_properties["input_config"], input_config)
        # spans.sql reads only columns the query reads: a table that lacks one fails here with
        # the executor's own message, naming the column, instead of a bare SQL error.
        check_queries_bind(config["database"], config.get("source"),
                           [split.pattern for split in input_config.splits])
        return spans.read_spans(pathlib.Path(config["database"]), config.get("source"))

    def span_settings(self, exec_properties: Dict[str, Any]) -> Dict[str, Any]:
        return warehouse_config(exec_properties)
