"""DuckDBExampleGen component: a QueryBasedExampleGen whose queries run on the local warehouse."""
from __future__ import annotations

import glob
import pathlib
from typing import Optional

from google.protobuf import struct_pb2
from tfx.components.example_gen.component import QueryBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2

from pipelines.components.duckdb_example_gen import executor


def data_fingerprint(database: pathlib.Path, source: Optional[str]) -> str:
    """Size and modification time of the data behind the query.

    It goes into the component's configuration, so that cached examples are reused only while
    the warehouse is unchanged: a regenerated table is a new input, as a new BigQuery table is.
    """
    paths = [pathlib.Path(p) for p in sorted(glob.glob(source))] if source else [
        pathlib.Path(database)]
    return ";".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths if p.exists())


class DuckDBExampleGen(QueryBasedExampleGen):
    """Reads the query's splits from DuckDB into tf.Examples, like BigQueryExampleGen does.

    `input_config` holds one split per query, each in BigQuery Standard SQL; the executor
    translates it for DuckDB with sqlglot.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(
        self,
        input_config: example_gen_pb2.Input,
        database: pathlib.Path,
        source: Optional[str] = None,
    ):
        config = struct_pb2.Struct()
        config.update({
            "database": str(pathlib.Path(database).resolve()),
            "data_fingerprint": data_fingerprint(database, source),
        })
        if source:
            config.update({"source": source})
        custom_config = example_gen_pb2.CustomConfig()
        custom_config.custom_config.Pack(config)
        output_config = example_gen_pb2.Output()  # one output split per input split
        super().__init__(input_config=input_config, output_config=output_config,
                         custom_config=custom_config)
