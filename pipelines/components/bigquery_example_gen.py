"""BigQueryExampleGen with spans: the local run's span driver, reading the spans from BigQuery.

The executor is TFX's own; only the driver differs from stock, so BigQuery runs the split
queries the span driver wrote, on the spans it selected. On Vertex AI the driver runs as the
ExampleGen's pre-cache-check hook (vertex_span_driver.py), before Vertex AI looks for a cached
result, exactly as TFX runs its file-based ExampleGens' driver there.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from tfx.extensions.google_cloud_big_query.example_gen.component import BigQueryExampleGen

from pipelines.components.span_driver import SpanDriver
from warehouse import spans


def read_bigquery_spans(project: Optional[str] = None) -> List[spans.Span]:
    """spans.sql run on BigQuery as written (one small GROUP BY job, billed to `project`)."""
    from google.cloud import bigquery

    client = bigquery.Client(project=project)
    rows = client.query(spans.spans_query()).result()
    return spans.from_rows(tuple(row.values()) for row in rows)


class BigQuerySpanDriver(SpanDriver):
    """The span driver for TFX's own launcher; Vertex AI runs vertex_span_driver instead."""

    def read_spans(self, exec_properties: Dict[str, Any]) -> List[spans.Span]:
        del exec_properties
        return read_bigquery_spans()


class SpannedBigQueryExampleGen(BigQueryExampleGen):
    """BigQueryExampleGen whose queries read the run's spans, and whose cache key is the data."""

    DRIVER_CLASS = BigQuerySpanDriver
