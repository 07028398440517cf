"""The exploratory report's SQL: the course's GROUP BY per feature and the table's summary.

Written in BigQuery Standard SQL and translated by `warehouse.sql.to_duckdb`, so the very
statements the report shows would also run on BigQuery.
"""
from __future__ import annotations

from typing import Any, Dict

import duckdb
import pandas as pd

from modules import features
from warehouse.sql import BIGQUERY_TABLE, LOCAL_TABLE, to_duckdb

# The course analyses births after 2000 only, as its training query does.
YEAR_FILTER = "year > 2000"

# One template for every feature: the course's analysis, in BigQuery Standard SQL.
FEATURE_QUERY_TEMPLATE = """SELECT
  {column},
  COUNT(1) AS num_babies,
  AVG(weight_pounds) AS avg_wt
FROM
  `{table}`
WHERE
  {year_filter}
GROUP BY
  {column}
ORDER BY
  {column}"""

SUMMARY_QUERY = f"""SELECT
  COUNT(1) AS total_rows,
  COUNTIF({YEAR_FILTER}) AS rows_kept,
  MIN(year) AS first_year,
  MAX(year) AS last_year,
  AVG(IF({YEAR_FILTER}, weight_pounds, NULL)) AS mean_wt,
  STDDEV(IF({YEAR_FILTER}, weight_pounds, NULL)) AS std_wt
FROM
  `{BIGQUERY_TABLE}`"""


def feature_query(feature_name: str) -> str:
    """The BigQuery statement for one feature; the name is checked against the declaration."""
    column = features.by_name(feature_name).name
    return FEATURE_QUERY_TEMPLATE.format(column=column, table=BIGQUERY_TABLE,
                                         year_filter=YEAR_FILTER)


def feature_summaries(connection: duckdb.DuckDBPyConnection) -> Dict[str, pd.DataFrame]:
    """Feature name -> rows (value, num_babies, avg_wt), one per value, NULL as its own value.

    Run on the warehouse rather than in pandas so the real table never has to fit in memory.
    """
    result = {}
    for name in features.FEATURE_NAMES:
        frame = connection.execute(to_duckdb(feature_query(name))).df()
        frame = frame.rename(columns={name: "value"})[["value", "num_babies", "avg_wt"]]
        frame["num_babies"] = frame["num_babies"].astype("int64")
        frame["avg_wt"] = frame["avg_wt"].astype("float64")
        result[name] = frame.reset_index(drop=True)
    return result


def dataset_summary(connection: duckdb.DuckDBPyConnection) -> Dict[str, Any]:
    """Total rows, rows passing the year filter, their years, and the weight's mean and std."""
    cursor = connection.execute(to_duckdb(SUMMARY_QUERY))
    columns = [d[0] for d in cursor.description]
    return dict(zip(columns, cursor.fetchone()))


def describe_source(connection: duckdb.DuckDBPyConnection) -> str:
    """Where `natality` comes from on this connection: a database file, or a view of exports."""
    view = connection.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = ? AND NOT internal", [LOCAL_TABLE]
    ).fetchone()
    if view:
        return f"DuckDB view {LOCAL_TABLE}: {view[0].strip().rstrip(';')}"
    row = connection.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    where = row[0] if row and row[0] else "an in-memory database"
    return f"DuckDB table {LOCAL_TABLE} in {where}"
