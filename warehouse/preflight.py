"""Checks the natality data before the pipeline starts, and names every problem it finds.

A bad export otherwise fails deep inside the run: a DuckDB conversion traceback when a string
hides at row 30,000 of a CSV (past what DuckDB's type sniffer samples), a Trainer crash on zero
examples, TFDV's "Expected INT but got FLOAT" for ages written as 39.0. Here the data is read
as the export wrote it (a CSV as text), each column the query reads is checked against the
type the real table has, and all problems are reported at once, each with a value and its row.
Values spans.sql's INT64 sums could not hold are named too: the span driver would fail on them.
"""
from __future__ import annotations

import dataclasses
import pathlib
from typing import Dict, List, Optional, Tuple

import duckdb
import pyarrow.compute as pc

from common.errors import DataValidationError
from warehouse import engine, sql
from warehouse.sampling import NATALITY_COLUMNS

# is_male spellings a text column may use (any case); an empty value means "unknown". 'F' and
# 'T' are left out on purpose: in an export 'F' more likely means female than false.
IS_MALE_SPELLINGS = ("true", "false", "1", "0")
_INTEGER = "BIGINT"


class PreflightError(DataValidationError):
    """The data cannot make examples; the message names each problem."""


def where_in_files(row: int, file: Optional[str]) -> str:
    """Where a value is, as every message here names it: its 1-based row, and its file."""
    return f"row {row:,}" + (f" of {file}" if file else "")


@dataclasses.dataclass(frozen=True)
class BadValues:
    column: str
    expected: str
    count: int
    value: str
    row: int
    file: Optional[str]
    kind: Optional[str] = None  # what the values should be, when not the column's type

    def describe(self, rows: int) -> str:
        where = where_in_files(self.row, self.file)
        kind = self.kind or _kind(self.column, self.expected)
        text = (f"column '{self.column}': {self.count:,} of {rows:,} values are not "
                f"{kind}, first {self.value!r} at {where}")
        if self.column == "is_male":
            text += (f"; accepted spellings are {', '.join(IS_MALE_SPELLINGS)} (any case), "
                     "the numbers 1 (male) and 0 (female), or an empty value for unknown "
                     "(an export coding 1 = male, 2 = female must be recoded)")
        return text


def _kind(column: str, expected: str) -> str:
    if column == "is_male":
        return "a boolean"
    return "whole numbers (within BIGINT)" if expected == _INTEGER else "finite numbers"


def query_columns(query: str) -> Tuple[Tuple[str, str], ...]:
    """(column, type in the real table) for each natality column the training query reads."""
    types = dict(NATALITY_COLUMNS)
    return tuple((name, types[name]) for name in sql.table_columns(query) if name in types)


def _quoted(source: str) -> str:
    return "'" + source.replace("'", "''") + "'"


def _raw_relation(source: Optional[str], table: str = sql.LOCAL_TABLE) -> str:
    """The data as the export wrote it: CSV as text, with each row's file; or the database
    file's own table (`engine.raw_table`), not the typed view the query reads."""
    if source is None:
        return table
    if engine.is_csv(source):
        return f"read_csv({_quoted(source)}, header = true, all_varchar = true, filename = true)"
    return f"read_parquet({_quoted(source)}, filename = true, file_row_number = true)"


def _bad_value_condition(column: str, expected: str, actual: str) -> str:
    quoted = f'"{column}"'
    if column == "is_male" and actual == "VARCHAR":
        spellings = ", ".join(f"'{s}'" for s in IS_MALE_SPELLINGS)
        return (f"{quoted} IS NOT NULL AND trim({quoted}) <> '' "
                f"AND lower(trim({quoted})) NOT IN ({spellings})")
    if column == "is_male" and engine.is_numeric(actual):
        # A cast to BOOLEAN reads any non-zero number as true: 2 (female) would become male.
        return f"{quoted} IS NOT NULL AND {quoted} NOT IN (0, 1)"
    if expected in (_INTEGER, "DOUBLE") and (actual == "VARCHAR" or engine.is_numeric(actual)):
        # Also where the types agree: a DOUBLE column can hold NaN and infinities.
        return "FALSE" if actual == expected == _INTEGER else \
            engine.unfit_number(quoted, actual, expected)
    if actual == expected:
        return "FALSE"
    return f"{quoted} IS NOT NULL AND TRY_CAST({quoted} AS {expected}) IS NULL"


@dataclasses.dataclass(frozen=True)
class SpanSum:
    """A sum of spans.sql (warehouse/queries/spans.sql): each row's part and the month's sum
    must fit its INT64 arithmetic, which fails there, or in BigQuery, without naming a row."""
    column: str
    part: str  # each row's part, as spans.sql computes it, in DuckDB over the typed columns
    why: str


# alias in spans.sql -> its sum; tests/test_preflight.py checks this names each of its sums.
SPAN_SUMS = {
    "weight_milli_pounds": SpanSum(
        "weight_pounds", 'round(coalesce("weight_pounds", 0) * 1000)',
        "spans.sql sums a month's weights in thousandths of a pound"),
    **{f"{name}_sum": SpanSum(name, f'CAST(coalesce("{name}", 0) AS HUGEINT)',
                              f"spans.sql sums a month's {name}")
       for name in ("mother_age", "gestation_weeks", "plurality")},
}
# spans.sql's span, year * 100 + month, in HUGEINT: computing it here cannot overflow.
_CENTURY = 'CAST("year" AS HUGEINT) * 100'
_SPAN = f'{_CENTURY} + "month"'
_YEAR_AND_MONTH = """'year ' || CAST("year" AS VARCHAR) || ', month ' || CAST("month" AS VARCHAR)"""
_INT64 = (-(1 << 63), (1 << 63) - 1)


def _beyond_int64(value: str) -> str:
    return f"({value}) IS NOT NULL AND TRY_CAST({value} AS BIGINT) IS NULL"


def span_overflows(connection: duckdb.DuckDBPyConnection, source: Optional[str],
                   rows: int) -> List[str]:
    """Values too large for spans.sql's INT64 arithmetic: a span (year * 100 + month), a row's
    part of a sum, or a month's sum outside INT64, each named with a value and its row."""
    relation = _typed(connection, _raw_relation(source, engine.raw_table(connection)))
    weight = SPAN_SUMS["weight_milli_pounds"]
    span_beyond = f"{_beyond_int64(_CENTURY)} OR {_beyond_int64(_SPAN)}"
    weight_beyond = _beyond_int64(weight.part)
    spans, weights = connection.execute(
        f"SELECT count(*) FILTER (WHERE {span_beyond}), count(*) FILTER (WHERE {weight_beyond}) "
        f"FROM {relation}").fetchone()
    found = []
    if spans:
        value, row, file = _first_bad(connection, source, "year", span_beyond, typed=True,
                                      shown=_YEAR_AND_MONTH)
        where = where_in_files(row, file)
        found.append(f"columns 'year' and 'month': {spans:,} of {rows:,} rows have a span "
                     "(spans.sql's year * 100 + month) beyond INT64, first "
                     f"{value} at {where}")
    if weights:
        value, row, file = _first_bad(connection, source, weight.column, weight_beyond,
                                      typed=True)
        kind = f"small enough for INT64 ({weight.why})"
        found.append(BadValues(weight.column, "", weights, value, row, file, kind
                               ).describe(rows))
    return found or _month_sum_overflows(connection, source, relation)


def _month_sum_overflows(connection: duckdb.DuckDBPyConnection, source: Optional[str],
                         relation: str) -> List[str]:
    """Months whose sum of a column is outside INT64, each with its largest value's row."""
    parts = {alias: f"CAST({figure.part} AS HUGEINT)" for alias, figure in SPAN_SUMS.items()}
    months = connection.execute(
        f"SELECT {_SPAN} AS span, " + ", ".join(
            f"sum({part}) AS {alias}, max(abs({part})) AS {alias}_largest"
            for alias, part in parts.items())
        + f" FROM {relation} GROUP BY span HAVING "
        + " OR ".join(_beyond_int64(f"sum({part})") for part in parts.values())
        + " ORDER BY span NULLS FIRST").fetchall()
    found = []
    for index, (alias, figure) in enumerate(SPAN_SUMS.items()):
        beyond = [(m[0], m[1 + 2 * index], m[2 + 2 * index]) for m in months
                  if not _INT64[0] <= m[1 + 2 * index] <= _INT64[1]]
        if not beyond:
            continue
        span, total, largest = beyond[0]
        month = "the rows with no year or month" if span is None else f"span {span}"
        condition = (f"({_SPAN}) IS NOT DISTINCT FROM {'NULL' if span is None else span} "
                     f"AND abs({parts[alias]}) = {largest}")
        value, row, file = _first_bad(connection, source, figure.column, condition, typed=True)
        where = where_in_files(row, file)
        found.append(f"column '{figure.column}': its sum is beyond INT64 in {len(beyond):,} "
                     f"month(s) ({figure.why}, {alias}), first {month}: {total:,}; "
                     f"its largest value there is {value!r} at {where}")
    return found


def _typed(connection: duckdb.DuckDBPyConnection, relation: str, rowid: bool = False) -> str:
    """`relation` with the query's columns in the real table's types, its row order kept."""
    casts = engine.casts(connection, relation)
    select = f"SELECT * REPLACE ({', '.join(casts)})" if casts else "SELECT *"
    return f"({select}{', rowid AS rowid' if rowid else ''} FROM {relation})"


def _first_bad(connection: duckdb.DuckDBPyConnection, source: Optional[str], column: str,
               condition: str, typed: bool = False,
               shown: Optional[str] = None) -> Tuple[str, int, Optional[str]]:
    """The first offending value (`column`'s, or the text `shown`), its 1-based row and its
    file, in the order of the files; with `typed`, `condition` reads the values as the query
    does."""
    value = shown or f'CAST("{column}" AS VARCHAR)'
    def relation_of(source: str) -> str:
        return _typed(connection, _raw_relation(source)) if typed else _raw_relation(source)

    if source is None:
        stored = engine.raw_table(connection)
        stored = _typed(connection, stored, rowid=True) if typed else stored
        return connection.execute(
            f"SELECT {value}, rowid + 1, NULL FROM {stored} WHERE {condition} "
            "ORDER BY rowid LIMIT 1").fetchone()
    relation = relation_of(source)
    if not engine.is_csv(source):
        return connection.execute(
            f"SELECT {value}, file_row_number + 1, filename FROM {relation} WHERE {condition} "
            "ORDER BY filename, file_row_number LIMIT 1").fetchone()
    # A CSV has no row numbers; DuckDB keeps a file's row order when nothing is sorted.
    (file,) = connection.execute(f"SELECT min(filename) FROM {relation} WHERE {condition}"
                                 ).fetchone()
    one_file = relation_of(file)
    flags = connection.execute(f"SELECT coalesce({condition}, FALSE) AS bad FROM {one_file}"
                               ).fetch_arrow_table().column("bad")
    index = pc.index(flags, True).as_py()
    (text,) = connection.execute(f"SELECT {value} FROM {one_file} LIMIT 1 OFFSET {index}"
                                 ).fetchone()
    return text, index + 1, file


def bad_values(connection: duckdb.DuckDBPyConnection, source: Optional[str],
               columns: Dict[str, str], expected: Tuple[Tuple[str, str], ...]) -> List[BadValues]:
    """Each present column holding values that are not of its type in the real table."""
    relation = _raw_relation(source, engine.raw_table(connection))
    conditions = {name: _bad_value_condition(name, kind, columns[name])
                  for name, kind in expected if name in columns}
    conditions = {name: c for name, c in conditions.items() if c != "FALSE"}
    if not conditions:
        return []
    counts = connection.execute("SELECT " + ", ".join(
        f"count(*) FILTER (WHERE {c})" for c in conditions.values()) + f" FROM {relation}"
    ).fetchone()
    found = []
    kinds = dict(expected)
    for (name, condition), count in zip(conditions.items(), counts):
        if count:
            value, row, file = _first_bad(connection, source, name, condition)
            found.append(BadValues(name, kinds[name], count, value, row, file))
    return found


def read_files(source: str) -> List[str]:
    """The files a --source reads (engine.source_files), none when DuckDB cannot list them:
    for the check that an output is not an input, before `unmatched_source` says why."""
    try:
        return engine.source_files(source)
    except duckdb.Error:
        return []


def unmatched_source(source: Optional[str]) -> Optional[str]:
    """What is wrong with a --source that matches no file, else None: decided by the files
    DuckDB would read (engine.source_files), so the check and the read agree."""
    if source is None:
        return None
    try:
        files = engine.source_files(source)
    except duckdb.Error as error:
        return f"--source {source!r} cannot be listed: {str(error).splitlines()[0]}"
    return None if files else f"--source {source!r} matches no file; nothing to read."


def check(database: pathlib.Path, source: Optional[str], query: str) -> int:
    """Raises PreflightError naming every problem of the data; returns its row count."""
    label = source or str(database)
    problem = unmatched_source(source)
    if problem:
        raise PreflightError(problem)
    try:
        connection = engine.connect(pathlib.Path(database), source)
    except (ValueError, duckdb.Error) as error:
        raise PreflightError(f"Cannot read the natality data at {label}: {error}") from error
    try:
        relation = _raw_relation(source, engine.raw_table(connection))
        columns = {name: kind for name, kind, *_ in
                   connection.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
        (rows,) = connection.execute(f"SELECT count(*) FROM {relation}").fetchone()
        if rows == 0:
            raise PreflightError(f"The natality data at {label} has no rows.")
        expected = query_columns(query)
        problems = []
        missing = [name for name, _ in expected if name not in columns]
        if missing:
            problems.append(
                "missing column" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
        problems += [bad.describe(rows) for bad in bad_values(connection, source, columns,
                                                             expected)]
        if problems:
            raise PreflightError(_report(label, problems, expected))
        overflows = span_overflows(connection, source, rows)
        if overflows:
            raise PreflightError(_report(label, overflows, expected))
        _check_rows_survive(connection, query, label, relation, expected)
        unsplit = rows_in_no_split(connection, source, query)
        if unsplit:
            raise PreflightError(_report(label, unsplit, expected))
    except duckdb.Error as error:
        raise PreflightError(f"Cannot read the natality data at {label}: {error}") from error
    finally:
        connection.close()
    return rows


def _check_rows_survive(connection: duckdb.DuckDBPyConnection, query: str, label: str,
                        relation: str, expected: Tuple[Tuple[str, str], ...]) -> None:
    if connection.execute(f"SELECT 1 FROM ({sql.to_duckdb(query)}) LIMIT 1").fetchone():
        return
    counts = connection.execute("SELECT " + ", ".join(
        f'count("{name}")' for name, _ in expected) + f" FROM {relation}").fetchone()
    empty = [name for (name, _), count in zip(expected, counts) if count == 0]
    raise PreflightError(
        f"The natality data at {label} has no rows left after the query's filters "
        f"({sql.QUERY_FILE.name}: year > 2000 and positive weight, age, plurality and "
        "gestation)" + (f"; every value is NULL in {', '.join(empty)}" if empty else "") + ".")


def rows_in_no_split(connection: duckdb.DuckDBPyConnection, source: Optional[str],
                     query: str) -> List[str]:
    """Rows the query keeps whose split key (hashmonth) is NULL, per NULL column it is made of:
    they would land in no split, since MOD(NULL, n) matches no bucket, and vanish unsaid."""
    relation = _typed(connection, _raw_relation(source, engine.raw_table(connection)))
    kept = f"coalesce({sql.rows_filter(query)}, FALSE)"
    key = sql.feature_expressions(query)["hashmonth"]
    found = []
    for column in sql.split_key_columns(query):
        condition = f'{kept} AND ({key}) IS NULL AND "{column}" IS NULL'
        (count,) = connection.execute(
            f"SELECT count(*) FILTER (WHERE {condition}) FROM {relation}").fetchone()
        if count:
            _, row, file = _first_bad(connection, source, column, condition, typed=True)
            where = where_in_files(row, file)
            found.append(f"column '{column}': {count:,} rows the query keeps have no {column} "
                         f"(first at {where}), so they have no hashmonth and would fall in no "
                         "split; give them a value or leave them out of the export")
    return found


def _report(label: str, problems: List[str], expected: Tuple[Tuple[str, str], ...]) -> str:
    needed = ", ".join(f"{name} {kind}" for name, kind in expected)
    return (f"The natality data at {label} cannot make examples:\n"
            + "".join(f"  - {p}\n" for p in problems)
            + f"An export needs these columns (the types of the real table): {needed}.")
