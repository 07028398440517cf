"""The training query: read once from its .sql file, wrapped for splits, translated for DuckDB.

The .sql file is BigQuery Standard SQL. BigQueryExampleGen runs `split_query(...)` as is; the
local run runs `to_duckdb(split_query(...))`, so both engines execute the same statement.
"""
from __future__ import annotations

import functools
import pathlib
from typing import Dict, Tuple

import sqlglot
from sqlglot import exp

QUERY_FILE = pathlib.Path(__file__).resolve().parent.parent / "pipelines" / "sql" / "babyweight.sql"
BIGQUERY_TABLE = "bigquery-public-data.samples.natality"
LOCAL_TABLE = "natality"

# Columns fingerprinted to pick a row for the sample: everything the query returns.
_SAMPLE_KEY_COLUMNS = ("hashmonth", "is_male", "mother_age", "plurality", "gestation_weeks",
                       "weight_pounds")


@functools.lru_cache(maxsize=None)
def base_query(path: pathlib.Path = QUERY_FILE) -> str:
    """The query file's text, as BigQuery runs it."""
    return path.read_text()


def split_query(
    query: str,
    hash_buckets: int,
    bucket_range: Tuple[int, int],
    sample_per_mille: int = 1000,
) -> str:
    """`query` restricted to hashmonth buckets [lo, hi) and optionally sampled, in BigQuery SQL.

    All rows of one month share a hashmonth, so a month never lands in two splits. The sample
    keeps a row when a fingerprint of its values falls in the first `sample_per_mille` of 1000
    buckets: deterministic, and representative of every month.
    """
    lo, hi = bucket_range
    conditions = [f"ABS(MOD(hashmonth, {hash_buckets})) >= {lo}",
                  f"ABS(MOD(hashmonth, {hash_buckets})) < {hi}"]
    if sample_per_mille < 1000:
        key = ", '|', ".join(f"CAST({c} AS STRING)" for c in _SAMPLE_KEY_COLUMNS)
        conditions.append(f"ABS(MOD(FARM_FINGERPRINT(CONCAT({key})), 1000)) < {sample_per_mille}")
    body = query.strip().rstrip(";")
    return "SELECT * FROM (\n" + body + "\n)\nWHERE " + "\n  AND ".join(conditions)


def split_queries(
    query: str, split_buckets: Dict[str, Tuple[int, int]], hash_buckets: int,
    sample_per_mille: int = 1000,
) -> Dict[str, str]:
    """One BigQuery statement per split name."""
    return {name: split_query(query, hash_buckets, rng, sample_per_mille)
            for name, rng in split_buckets.items()}


def to_duckdb(bigquery_sql: str, table: str = LOCAL_TABLE) -> str:
    """Translates BigQuery SQL to DuckDB, pointing the natality table at the local one.

    FARM_FINGERPRINT stays a function call; warehouse.engine registers it on every connection
    with BigQuery's exact semantics.
    """
    statements = sqlglot.parse(bigquery_sql, read="bigquery")
    if len(statements) != 1 or statements[0] is None:
        raise ValueError(f"expected one SQL statement, found {len(statements)}")
    tree = statements[0]
    source = exp.to_table(BIGQUERY_TABLE, dialect="bigquery")
    for node in tree.find_all(exp.Table):
        if [p.name for p in node.parts] == [p.name for p in source.parts]:
            node.replace(exp.to_table(table).as_(node.alias_or_name, quoted=False)
                         if node.alias else exp.to_table(table))
    return tree.sql(dialect="duckdb", pretty=True)
