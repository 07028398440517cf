"""The training query: read once from its .sql file, wrapped for splits, translated for DuckDB.

The .sql file is BigQuery Standard SQL. BigQueryExampleGen runs `split_query(...)` as is; the
local run runs `to_duckdb(split_query(...))`, so both engines execute the same statement.
"""
from __future__ import annotations

import functools
import pathlib
import time
from typing import Dict, Tuple

import sqlglot
from sqlglot import exp

QUERY_FILE = pathlib.Path(__file__).resolve().parent / "queries" / "babyweight.sql"
BIGQUERY_TABLE = "bigquery-public-data.samples.natality"
LOCAL_TABLE = "natality"

# Columns fingerprinted to pick a row for the sample: everything the query returns.
_SAMPLE_KEY_COLUMNS = ("hashmonth", "is_male", "mother_age", "plurality", "gestation_weeks",
                       "weight_pounds")
# Those that are numbers enter the key as integers' text: BigQuery and DuckDB spell a float
# as text differently (CAST(7.0 AS STRING) is '7' in BigQuery, '7.0' in DuckDB), and a table
# loaded from files may hold an integer column as floats; an integer's text is the same
# everywhere. The weight in whole thousandths of a pound, as spans.sql sums it: the pre-flight
# check refuses a weight whose thousandths do not fit INT64, and ages and weeks that are not
# whole numbers in INT64, so neither cast can overflow on a table the run reads.
_INTEGER_KEY_COLUMNS = frozenset({"mother_age", "gestation_weeks"})
_THOUSANDTHS_KEY_COLUMNS = frozenset({"weight_pounds"})


def _sample_key_part(column: str) -> str:
    if column in _INTEGER_KEY_COLUMNS:
        return f"CAST(CAST({column} AS INT64) AS STRING)"
    if column in _THOUSANDTHS_KEY_COLUMNS:
        return f"CAST(CAST(ROUND({column} * 1000) AS INT64) AS STRING)"
    return f"CAST({column} AS STRING)"


def query_text(path: pathlib.Path) -> str:
    """A query file's text as it is now: read again whenever the file changed, so that a
    process that runs the pipeline more than once (the CT demo, a notebook) never runs an
    edited file's old text while the cache keys already see the new one.

    A file changed in the last _RECENT_SECONDS is read anew every time, as git treats a
    "racily clean" file: on a file system whose timestamps are coarse (whole or even seconds),
    a second edit of the same size within one tick keeps the change time the cache is keyed
    by. Once the file is older than that, a later edit has a later change time."""
    status = path.stat()
    if _clock() - status.st_mtime < _RECENT_SECONDS:
        return path.read_text()
    return _read(path, status.st_mtime_ns, status.st_size)


_RECENT_SECONDS = 3.0  # above the coarsest common file-system timestamp tick (FAT's 2 s)
_clock = time.time  # the wall clock file change times are on (a seam for tests)


@functools.lru_cache(maxsize=16)
def _read(path: pathlib.Path, mtime_ns: int, size: int) -> str:
    """Keyed by the file's change time and size: the per-row mapping asks for it often."""
    return path.read_text()


def base_query(path: pathlib.Path = QUERY_FILE) -> str:
    """The query file's text, as BigQuery runs it."""
    return query_text(path)


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
        key = ", '|', ".join(_sample_key_part(c) for c in _SAMPLE_KEY_COLUMNS)
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


# ------------------------------------------------------------------------------------------------
# The query's per-row mapping, for scoring rows one at a time
# ------------------------------------------------------------------------------------------------

# The query's CTE that reads the table, maps its values and filters rows.
ROWS_CTE = "births"
# The scoring query's column naming the first filter a row fails (NULL when it passes).
REJECTED_COLUMN = "rejected_by"


@functools.lru_cache(maxsize=None)
def _rows_select(query: str) -> exp.Select:
    """The SELECT of the query's `births` CTE: the table's values mapped, then filtered."""
    tree = sqlglot.parse_one(query, read="bigquery")
    for cte in tree.find_all(exp.CTE):
        if cte.alias == ROWS_CTE and isinstance(cte.this, exp.Select):
            return cte.this
    raise ValueError(f"the training query has no `{ROWS_CTE}` CTE to map rows with")


def feature_expressions(query: str) -> Dict[str, str]:
    """Output column -> its expression over the table's columns, in DuckDB SQL (no alias).

    What `CASE plurality WHEN 1 THEN 'Single(1)' ...` says lives in the query file only;
    batch prediction runs these very expressions on the rows it is given.
    """
    return dict(_feature_expressions(query))


@functools.lru_cache(maxsize=None)
def _feature_expressions(query: str) -> Tuple[Tuple[str, str], ...]:
    """Generated once per query: batch prediction asks for every row it maps."""
    return tuple((column.alias_or_name, column.unalias().sql(dialect="duckdb"))
                 for column in _rows_select(query).expressions)


def rows_filter(query: str) -> str:
    """The WHERE of the query's `births` CTE in DuckDB SQL ("TRUE" when it has none)."""
    where = _rows_select(query).args.get("where")
    return where.this.sql(dialect="duckdb") if where is not None else "TRUE"


def split_key_columns(query: str) -> Tuple[str, ...]:
    """The table columns the query's hashmonth (the split key) is computed from."""
    select = _rows_select(query)
    for column in select.expressions:
        if column.alias_or_name == "hashmonth":
            return tuple(dict.fromkeys(c.name for c in column.find_all(exp.Column)))
    return ()


def scoring_query(query: str) -> str:
    """The query's rows once each, in BigQuery SQL, with the filter each row fails, if any.

    For scoring, not training: no "no ultrasound" copies (each row is predicted once), and a
    row the WHERE would drop is kept with REJECTED_COLUMN naming the condition, so that a
    caller can count it as rejected with that reason instead of losing it without a word.
    """
    select = _rows_select(query).copy()
    where = select.args.get("where")
    select.set("where", None)
    if where is not None:
        conditions = list(where.this.flatten()) if isinstance(where.this, exp.And) \
            else [where.this]
        whens = " ".join(
            f"WHEN NOT COALESCE({c.sql(dialect='bigquery')}, FALSE) "
            f"THEN {exp.Literal.string(c.sql(dialect='bigquery')).sql(dialect='bigquery')}"
            for c in conditions)
        select = select.select(
            sqlglot.parse_one(f"CASE {whens} END AS {REJECTED_COLUMN}", read="bigquery"))
    return select.sql(dialect="bigquery", pretty=True)


@functools.lru_cache(maxsize=None)
def table_columns(query: str) -> Tuple[str, ...]:
    """The natality table's columns a BigQuery query reads (each SELECT whose FROM names the
    table), in the order they appear."""
    source = exp.to_table(BIGQUERY_TABLE, dialect="bigquery")
    names: list = []
    for select in sqlglot.parse_one(query, read="bigquery").find_all(exp.Select):
        tables = [t for t in select.find_all(exp.Table) if t.parent_select is select]
        if not any([p.name for p in t.parts] == [p.name for p in source.parts] for t in tables):
            continue
        for column in select.find_all(exp.Column):
            if column.name not in names:
                names.append(column.name)
    return tuple(names)
