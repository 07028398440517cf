"""Spans: the natality rows of one month of births, the unit in which new data arrives.

A span is the integer year * 100 + month (200812 is December 2008), as TFX numbers spans. The
warehouse's spans and their fingerprints come from `warehouse/queries/spans.sql`; a run reads a
selection of them (every span by default, or a range or the newest N, see DataConfig), and the
selection wraps the training query the way the splits do: an outer filter on the query's own
`hashmonth` column, never an edit of babyweight.sql.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import pathlib
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import sqlglot
from sqlglot import exp

from warehouse import engine, sql

SPANS_QUERY_FILE = sql.QUERY_FILE.parent / "spans.sql"
# spans.sql's columns that say which rows a month holds: its number, and each row's values.
_KEYING_COLUMNS = ("span", "rows_fingerprint")


class SpanSelectionError(ValueError):
    """The requested spans are not in the warehouse, or leave a split without any month."""


@dataclasses.dataclass(frozen=True)
class Span:
    """One month of the warehouse: its number and the figures its fingerprint is made of."""

    number: int
    row_count: int
    checksums: Tuple[int, ...]


def spans_query(path: pathlib.Path = SPANS_QUERY_FILE) -> str:
    """spans.sql as BigQuery runs it."""
    return sql.query_text(path)


def unfingerprinted_columns(query: str, spans_sql: Optional[str] = None) -> List[str]:
    """The table's columns `query` reads that spans.sql's month and row fingerprint do not:
    a change to one of them would leave ExampleGen's cached examples in use without a word."""
    return [name for name in sql.table_columns(query)
            if name not in _fingerprinted(spans_sql or spans_query())]


@functools.lru_cache(maxsize=None)
def _fingerprinted(spans_sql: str) -> frozenset:
    tree = sqlglot.parse_one(spans_sql, read="bigquery")
    return frozenset(column.name for alias in tree.find_all(exp.Alias)
                     if alias.alias in _KEYING_COLUMNS for column in alias.find_all(exp.Column))


def from_rows(rows: Iterable[Sequence[object]]) -> List[Span]:
    """spans.sql's result rows as Spans, oldest first (rows without a year or month dropped)."""
    spans = [Span(int(r[0]), int(r[1]), tuple(int(v or 0) for v in r[2:]))
             for r in rows if r[0] is not None]
    return sorted(spans, key=lambda s: s.number)


def select(spans: Sequence[Span], first: int = 0, last: int = 0, newest: int = 0) -> List[Span]:
    """The spans a run reads: those in [first, last] (0 = unbounded), then only the newest N."""
    chosen = [s for s in spans if s.number >= first and (not last or s.number <= last)]
    if newest:
        chosen = chosen[-newest:]
    if not chosen:
        present = (f"it holds spans {spans[0].number} to {spans[-1].number}" if spans
                   else "it holds no rows")
        wanted = f"from {first or 'the oldest'} to {last or 'the newest'}"
        raise SpanSelectionError(
            f"No span of the warehouse was selected ({wanted}); {present}. Change "
            "--first-span / --last-span / --num-spans.")
    return chosen


def hashmonth(span: int) -> int:
    """The query's hashmonth of the span's rows: FARM_FINGERPRINT(CONCAT(year, month))."""
    year, month = divmod(span, 100)
    return engine.farm_fingerprint(f"{year}{month}")


def span_query(statement: str, spans: Sequence[Span]) -> str:
    """`statement` restricted to the rows of `spans`, in BigQuery SQL.

    A semi-join on a list of hashmonths: DuckDB evaluates it after the query's own columns,
    where an IN list of constants made it compute every row's fingerprint twice.
    """
    values = ", ".join(str(hashmonth(s.number)) for s in spans)
    return ("SELECT * FROM (\n" + statement.strip().rstrip(";") + "\n)\n"
            "WHERE hashmonth IN (SELECT span_hashmonth FROM UNNEST([" + values + "]) "
            "AS span_hashmonth)")


def fingerprint(spans: Sequence[Span]) -> str:
    """Names the selection and its data: equal exactly when the same rows would be read."""
    digest = hashlib.sha256(repr([dataclasses.astuple(s) for s in spans]).encode())
    rows = sum(s.row_count for s in spans)
    return (f"spans {spans[0].number}-{spans[-1].number} ({len(spans)} months, {rows} rows of "
            f"the table) sha256:{digest.hexdigest()[:16]}")


def months_per_split(spans: Sequence[Span], split_buckets: Dict[str, Sequence[int]],
                     hash_buckets: int) -> Dict[str, int]:
    """How many of the selected months land in each split (splits take whole months)."""
    counts = {name: 0 for name in split_buckets}
    for span in spans:
        bucket = abs(_truncated_mod(hashmonth(span.number), hash_buckets))
        for name, (lo, hi) in split_buckets.items():
            counts[name] += lo <= bucket < hi
    return counts


def check_splits(spans: Sequence[Span], split_buckets: Dict[str, Sequence[int]],
                 hash_buckets: int) -> None:
    """Fails before any work when the selected months leave a split empty."""
    counts = months_per_split(spans, split_buckets, hash_buckets)
    empty = [name for name, count in counts.items() if not count]
    if empty:
        raise SpanSelectionError(
            f"The {len(spans)} selected spans ({spans[0].number} to {spans[-1].number}) put no "
            f"month in split(s) {', '.join(empty)} (months per split: {counts}); splits take "
            "whole months, so select more spans (--num-spans, --first-span).")


def _truncated_mod(value: int, modulus: int) -> int:
    """SQL's MOD: the remainder takes the dividend's sign (Python's % takes the divisor's)."""
    remainder = abs(value) % modulus
    return -remainder if value < 0 else remainder


def read_spans(database: pathlib.Path, source: Optional[str] = None) -> List[Span]:
    """The local warehouse's spans (spans.sql translated for DuckDB)."""
    connection = engine.connect(pathlib.Path(database), source)
    try:
        return from_rows(connection.execute(sql.to_duckdb(spans_query())).fetchall())
    finally:
        connection.close()
