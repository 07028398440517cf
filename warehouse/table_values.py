"""A value in the natality table's own type (plurality 2, is_male true) -> the query's spelling.

Rows given to batch or local prediction may come straight from the table (or an export of it)
rather than in the model's vocabulary. Their values are mapped by the training query's own
select-list (warehouse.sql.feature_expressions), run by DuckDB, so the mapping has one
definition, the .sql file. Each distinct value is evaluated once per process and cached.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Dict, Optional, Union

import duckdb

from common import numerals
from warehouse import sql
from warehouse.sampling import NATALITY_COLUMNS

Raw = Union[bool, int]

_TABLE_TYPES: Dict[str, str] = dict(NATALITY_COLUMNS)
# The warehouse's text spellings of a BOOL (what a CSV export of the table holds).
_BOOLEAN_WORDS = {"true": True, "false": False}
_BIGINT_MIN, _BIGINT_MAX = -(2 ** 63), 2 ** 63 - 1
_LOCK = threading.Lock()
_CONNECTION: Optional[duckdb.DuckDBPyConnection] = None


def table_typed(name: str, value: Any) -> Optional[Raw]:
    """`value` as a value of the table's column `name` (BOOLEAN or BIGINT), or None if it is not.

    Text counts when it spells one ('true' in any case, '2' in ASCII digits), as in a CSV
    export; a JSON number counts for BIGINT when it is whole and fits its 64 bits.
    """
    kind = _TABLE_TYPES.get(name)
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            return _BOOLEAN_WORDS.get(value.strip().lower())
    elif kind == "BIGINT":
        return _bigint(value)
    return None


def _bigint(value: Any) -> Optional[int]:
    """`value` as a BIGINT, or None: a whole number outside its 64 bits is no value of the
    column (and DuckDB's CAST of it raises, where a row's value must be that row's rejection)."""
    number: Optional[int] = None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        number = numerals.integer(value)
    return number if number is not None and _BIGINT_MIN <= number <= _BIGINT_MAX else None


def _connection() -> duckdb.DuckDBPyConnection:
    global _CONNECTION
    if _CONNECTION is None:
        _CONNECTION = duckdb.connect(":memory:")
    return _CONNECTION


@functools.lru_cache(maxsize=4096)
def _mapped(query: str, name: str, value: Raw, kind: str) -> Optional[str]:
    expression = sql.feature_expressions(query)[name]
    statement = f"SELECT {expression} FROM (SELECT CAST(? AS {kind}) AS {name})"
    with _LOCK:
        (result,) = _connection().execute(statement, [value]).fetchone()
    return None if result is None else str(result)


def query_value(name: str, value: Raw, query: Optional[str] = None) -> Optional[str]:
    """What the training query (`query`'s text, by default the query file's) makes of table
    value `value` in column `name` (None for NULL)."""
    query = sql.base_query() if query is None else query
    if name not in sql.feature_expressions(query):
        raise KeyError(f"the training query has no column {name!r}")
    return _mapped(query, name, value, _TABLE_TYPES[name])
