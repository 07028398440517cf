"""Times the data stages at several sizes: generate, query, DuckDBExampleGen, StatisticsGen.

Beside them, in the same run, TFX's stock CsvExampleGen converts the very same rows (the query's
output exported to CSV), so the two ExampleGens are compared on equal work. Each executor is run
directly, without the orchestrator, to time the component's own work.

    python -m benchmarks.data_stages --sizes 100000 300000 1000000
"""
from __future__ import annotations


import dataclasses  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import pathlib  # noqa: E402
import tempfile  # noqa: E402
from typing import Dict, List, Optional, Sequence, Tuple  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.harness import markdown_table, publish, timed  # noqa: E402
from common import logs  # noqa: E402

log = logging.getLogger("babyweight.benchmarks")


@dataclasses.dataclass(frozen=True)
class DataStagesConfig:
    """The sizes the data stages are timed at."""

    sizes: Tuple[int, ...] = harness.sizes(100_000, 300_000, 1_000_000)


def _exec_properties(component) -> Dict[str, object]:
    from google.protobuf import json_format

    return {key: (json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR") else value)
            for key, value in component.exec_properties.items()}


def _examples(uri: str, splits: Sequence[str]):
    from tfx.types import standard_artifacts

    artifact = standard_artifacts.Examples()
    artifact.uri = uri
    artifact.split_names = json.dumps(list(splits))
    return artifact


def measure(rows: int, work: pathlib.Path, beam_args: List[str]) -> Dict[str, object]:
    """Seconds per stage for `rows` raw natality rows."""
    from tfx.components.example_gen.csv_example_gen import executor as csv_executor
    from tfx.components.example_gen.csv_example_gen.component import CsvExampleGen
    from tfx.components.statistics_gen.component import StatisticsGen
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from pipelines import pipeline
    from pipelines.speedups import batched_reads
    from pipelines.components.duckdb_example_gen import executor as duckdb_executor
    from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
    from pipelines.config import DataConfig
    from warehouse import engine, generator, sql

    seconds: Dict[str, float] = {}
    database = work / "natality.duckdb"
    with timed(seconds, "generate"):
        generator.generate(database, rows=rows, seed=1)
    data = DataConfig()
    queries = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)
    connection = engine.connect(database)
    examples = 0
    with timed(seconds, "query"):
        for statement in queries.values():
            examples += sum(batch.num_rows for batch in connection.execute(
                sql.to_duckdb(statement)).fetch_record_batch(65_536))
    csv_file = work / "csv" / "natality.csv"
    csv_file.parent.mkdir()
    connection.execute(f"COPY ({sql.to_duckdb(sql.base_query())}) TO '{csv_file}' (HEADER)")
    connection.close()

    context = BaseBeamExecutor.Context(beam_pipeline_args=beam_args, tmp_dir=str(work / "tmp"))
    duckdb_gen = DuckDBExampleGen(pipeline.input_config(data), database=database)
    duckdb_out = _examples(str(work / "duckdb_examples"), list(queries))
    with timed(seconds, "duckdb_example_gen"):
        duckdb_executor.Executor(context).Do({}, {"examples": [duckdb_out]},
                                             _exec_properties(duckdb_gen))

    stats = standard_artifacts.ExampleStatistics()
    stats.uri = str(work / "statistics")
    with timed(seconds, "statistics_gen"):
        # The local pipeline's StatisticsGen: TFX's executor reading a batch at a time.
        batched_reads.StatisticsGenExecutor(context).Do(
            {"examples": [duckdb_out]}, {"statistics": [stats]},
            _exec_properties(StatisticsGen(examples=duckdb_gen.outputs["examples"])))

    csv_gen = CsvExampleGen(input_base=str(csv_file.parent))
    csv_out = _examples(str(work / "csv_examples"), ["train", "eval"])
    csv_props = _exec_properties(csv_gen)
    csv_props["input_base"] = str(csv_file.parent)
    with timed(seconds, "csv_example_gen"):
        csv_executor.Executor(context).Do({}, {"examples": [csv_out]}, csv_props)
    return {"raw_rows": rows, "examples": examples, **seconds}


def main(argv: Optional[Sequence[str]] = None) -> int:
    config, output = harness.parse("data_stages", __doc__, argv, DataStagesConfig)
    logs.setup()
    from pipelines.config import PipelineConfig

    beam_args = list(PipelineConfig().beam_pipeline_args())  # what the local pipeline passes
    records = []
    for rows in config.sizes:
        with tempfile.TemporaryDirectory(prefix="babyweight-bench-") as work:
            log.info("measuring %d raw rows ...", rows)
            record = measure(rows, pathlib.Path(work), beam_args)
            log.info("%s", record)
            records.append(record)
    headers = ["raw rows", "examples", "generate s", "query s", "DuckDBExampleGen s",
               "DuckDB ex/s", "CsvExampleGen s", "CSV ex/s", "speed-up", "StatisticsGen s",
               "stats ex/s"]
    rows_out = []
    for r in records:
        n = r["examples"]
        rows_out.append([r["raw_rows"], n, r["generate"], r["query"], r["duckdb_example_gen"],
                         n / r["duckdb_example_gen"], r["csv_example_gen"],
                         n / r["csv_example_gen"],
                         f"{r['csv_example_gen'] / r['duckdb_example_gen']:.1f}x",
                         r["statistics_gen"], n / r["statistics_gen"]])
    table = markdown_table(headers, rows_out)
    publish("data_stages", table, records, write=output.write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
