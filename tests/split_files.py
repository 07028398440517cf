"""ExampleGen's train split of a small synthetic warehouse, written as its executor writes it."""
from __future__ import annotations

import pathlib


def write_train_split(work: pathlib.Path, rows: int, seed: int) -> str:
    """Writes the split's shards under `work`; their glob pattern."""
    from pipelines.components.duckdb_example_gen import executor
    from pipelines.config import DataConfig
    from warehouse import generator, sql

    database = work / "natality.duckdb"
    generator.generate(database, rows=rows, seed=seed)
    data = DataConfig()
    query = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)["train"]
    executor._WriteSplits(str(database), None)._write_split(  # pylint: disable=protected-access
        ("train", query, str(work / "Split-train")))
    return str(work / "Split-train" / "*")
