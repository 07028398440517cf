"""DuckDBExampleGen component: a QueryBasedExampleGen whose queries run on the local warehouse."""
from __future__ import annotations

import pathlib
from typing import Any, Mapping, Optional

from google.protobuf import struct_pb2
from tfx.components.example_gen.component import QueryBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2

from pipelines.components.duckdb_example_gen import driver, executor


class DuckDBExampleGen(QueryBasedExampleGen):
    """Reads the query's splits from DuckDB into tf.Examples, like BigQueryExampleGen does.

    `input_config` holds one split per query, each in BigQuery Standard SQL; the executor
    translates it for DuckDB with sqlglot. `range_config` selects the spans (months) a run
    reads, resolved by the driver at run time against the warehouse's data, which also keys
    the cache on that data (pipelines/components/span_driver.py). `span_settings` (the split
    layout, common.config.DataConfig.split_layout) lets the driver refuse a selection that
    leaves a split empty.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = driver.DuckDBSpanDriver

    def __init__(
        self,
        input_config: example_gen_pb2.Input,
        database: pathlib.Path,
        source: Optional[str] = None,
        range_config: Optional[range_config_pb2.RangeConfig] = None,
        span_settings: Optional[Mapping[str, Any]] = None,
    ):
        config = struct_pb2.Struct()
        config.update({"database": str(pathlib.Path(database).resolve()),
                       **(span_settings or {})})
        if source:
            config.update({"source": source})
        custom_config = example_gen_pb2.CustomConfig()
        custom_config.custom_config.Pack(config)
        output_config = example_gen_pb2.Output()  # one output split per input split
        super().__init__(input_config=input_config, output_config=output_config,
                         custom_config=custom_config, range_config=range_config)
