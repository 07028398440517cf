"""DuckDBExampleGen's driver: the span driver reading the local warehouse's spans."""
from __future__ import annotations

import pathlib
from typing import Any, Dict, List

from pipelines.components.duckdb_example_gen.executor import warehouse_config
from pipelines.components.span_driver import SpanDriver
from warehouse import spans


class DuckDBSpanDriver(SpanDriver):
    """Runs spans.sql on the DuckDB file (or the user's export) the executor will read."""

    def read_spans(self, exec_properties: Dict[str, Any]) -> List[spans.Span]:
        config = warehouse_config(exec_properties)
        return spans.read_spans(pathlib.Path(config["database"]), config.get("source"))

    def span_settings(self, exec_properties: Dict[str, Any]) -> Dict[str, Any]:
        return warehouse_config(exec_properties)
