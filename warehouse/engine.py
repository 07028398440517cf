"""Connections to the embedded DuckDB warehouse, with BigQuery's functions the query needs."""
from __future__ import annotations

import pathlib
import threading
import time
from typing import Callable, List, Optional, TypeVar

import duckdb
from duckdb import sqltypes
import farmhash

from common import numerals
from common.errors import WarehouseBusyError
from warehouse.sql import LOCAL_TABLE

T = TypeVar("T")
# How long a reader waits for a writer's lock on the file (an append's transaction) to go.
LOCK_WAIT_SECONDS = 30.0

_INT64_WRAP = 1 << 64
_INT64_MAX = (1 << 63) - 1


def farm_fingerprint(value: str) -> int:
    """BigQuery's FARM_FINGERPRINT: FarmHash Fingerprint64 read as a signed int64."""
    unsigned = farmhash.fingerprint64(value)
    return unsigned - _INT64_WRAP if unsigned > _INT64_MAX else unsigned


# Connections to one file in one process share a catalog: Beam's multi-threaded DirectRunner
# opens them from several threads at once, so checking and registering happen under a lock.
_REGISTRATION = threading.Lock()


def register_functions(connection: duckdb.DuckDBPyConnection) -> None:
    """Registers FARM_FINGERPRINT(VARCHAR) -> BIGINT, NULL in gives NULL out, as in BigQuery."""
    with _REGISTRATION:
        (registered,) = connection.execute(
            "SELECT COUNT(*) FROM duckdb_functions() WHERE function_name = 'farm_fingerprint'"
        ).fetchone()
        if registered:
            return
        connection.create_function(
            "farm_fingerprint", farm_fingerprint, [sqltypes.VARCHAR], sqltypes.BIGINT,
            type="native", null_handling="default", side_effects=False,
        )


def is_csv(source: str) -> bool:
    lowered = source.lower()
    return lowered.endswith(".csv") or lowered.endswith(".csv.gz")


def _source_reader(source: str) -> str:
    """CSV is read as text and typed by `_typed_select`: DuckDB's sniffer guesses a column's
    type from the first rows only, and a later value that does not fit is then a crash."""
    lowered = source.lower()
    quoted = "'" + source.replace("'", "''") + "'"
    if lowered.endswith(".parquet") or lowered.endswith(".pq"):
        return f"read_parquet({quoted})"
    if is_csv(source):
        return f"read_csv({quoted}, header = true, all_varchar = true)"
    raise ValueError(f"--source must name .csv, .csv.gz or .parquet files, got {source!r}")


def source_files(source: str) -> List[str]:
    """The files DuckDB's readers read for `source`, by DuckDB's own glob(): a pattern's matches,
    else an existing path as itself ('exports [v2]/natality.csv'), which Python's glob.glob
    reads as a pattern. Known extensions are not fetched: a check must not download."""
    connection = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                                    "autoload_known_extensions": False})
    try:
        return [name for (name,) in
                connection.execute("SELECT file FROM glob(?)", [source]).fetchall()]
    finally:
        connection.close()


_INTEGER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                  "UINTEGER", "UBIGINT", "UHUGEINT")


def is_numeric(kind: str) -> bool:
    """Whether DuckDB type `kind` holds numbers (a Parquet column's INT32, a DECIMAL, ...)."""
    return kind in _INTEGER_TYPES + ("FLOAT", "DOUBLE") or kind.startswith("DECIMAL")


def _fails(column: str, value: str, what: str) -> str:
    """A DuckDB error naming the column and value, for a value the pre-flight check refuses."""
    return f"error('column {column}: ' || CAST({value} AS VARCHAR) || ' is not {what}')"


# Whole-number text: digits, optionally followed by a point and zeros only ('39', '+39', '39.0').
# Parsed as BIGINT, not through DOUBLE, which rounds past 2**53 and reads '30.0000000000000001'
# as 30; TRY_CAST('39.5' AS BIGINT) alone would round to 40.
_WHOLE_TEXT = r"^([+-]?[0-9]+)(\.0*)?$"


def whole_number_of_text(value: str) -> str:
    """The BIGINT a text spells exactly, else NULL (a fraction, NaN, 1e400, out of range)."""
    trimmed = f"trim({value})"
    return (f"CASE WHEN regexp_matches({trimmed}, '{_WHOLE_TEXT}') THEN "
            f"TRY_CAST(regexp_extract({trimmed}, '{_WHOLE_TEXT}', 1) AS BIGINT) END")


def decimal_of_text(value: str) -> str:
    """The DOUBLE a text spells as an ASCII decimal number (common/numerals.py), else NULL.
    Not TRY_CAST alone: it also reads digit separators, '7_5' as 75."""
    trimmed = f"trim({value})"
    return (f"CASE WHEN regexp_full_match({trimmed}, '{numerals.DECIMAL_PATTERN}') THEN "
            f"TRY_CAST({trimmed} AS DOUBLE) END")


def unfit_number(value: str, actual: str, expected: str) -> str:
    """A condition true where a non-NULL `value` stored as `actual` is not a finite number (as
    text: an ASCII decimal one), or for a BIGINT column not a whole number within BIGINT: such
    values would later fail without a name (NaN in a CAST) or change (rounded, '7_5' as 75)."""
    if actual == "VARCHAR":
        present = f"{value} IS NOT NULL AND trim({value}) <> ''"
        if expected == "BIGINT":
            return f"{present} AND ({whole_number_of_text(value)}) IS NULL"
        return f"{present} AND NOT coalesce(isfinite({decimal_of_text(value)}), FALSE)"
    finite = f"coalesce(isfinite(TRY_CAST({value} AS DOUBLE)), FALSE)"
    if expected == "BIGINT":
        if actual in _INTEGER_TYPES:  # integer types: only the range can fail
            return f"{value} IS NOT NULL AND TRY_CAST({value} AS BIGINT) IS NULL"
        return (f"{value} IS NOT NULL AND NOT ({finite} AND {value} = floor({value}) "
                f"AND TRY_CAST({value} AS BIGINT) IS NOT NULL)")
    return f"{value} IS NOT NULL AND NOT {finite}"


def _cast(column: str, actual: str, expected: str) -> str:
    """`column` as the real table's type; values were checked to fit (warehouse.preflight), and
    one that does not fails naming its column and value, never changed or read as NULL."""
    value = f'"{column}"'
    if expected == "BOOLEAN" and is_numeric(actual):
        # Not CAST: it reads every non-zero number (a 2 coding female) as true.
        return (f"CASE WHEN {value} IS NULL THEN NULL WHEN {value} IN (0, 1) THEN {value} = 1 "
                f"ELSE {_fails(column, value, '1 or 0')} END AS \"{column}\"")
    if expected in ("BIGINT", "DOUBLE") and (actual == "VARCHAR" or is_numeric(actual)):
        typed = f"CAST({value} AS {expected})"
        if actual == "VARCHAR":
            typed = whole_number_of_text(value) if expected == "BIGINT" else \
                decimal_of_text(value)
        what = "a whole number" if expected == "BIGINT" else "a finite number"
        return (f"CASE WHEN {unfit_number(value, actual, expected)} THEN "
                f"{_fails(column, value, what)} ELSE {typed} END AS \"{column}\"")
    if actual == "VARCHAR":
        value = f"NULLIF(trim({value}), '')"
    return f"CAST({value} AS {expected}) AS \"{column}\""


def casts(connection: duckdb.DuckDBPyConnection, reader: str) -> List[str]:
    """Each column the query reads that `reader` stores in another type than the real table,
    cast to it (integral floats too); the pre-flight check has named any value that would not
    fit. None for a relation that does not exist yet: the caller's query names that problem."""
    from warehouse import preflight, sql

    try:
        actual = {name: kind for name, kind, *_ in
                  connection.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()}
    except duckdb.CatalogException:
        return []
    return [_cast(name, actual[name], kind)
            for name, kind in preflight.query_columns(sql.base_query())
            if name in actual and actual[name] != kind]


def _typed_select(connection: duckdb.DuckDBPyConnection, reader: str) -> str:
    """`reader` with the casts of `_casts`; other columns are left as the export wrote them."""
    typed = casts(connection, reader)
    return f"SELECT * REPLACE ({', '.join(typed)}) FROM {reader}" if typed else \
        f"SELECT * FROM {reader}"


STORED = "stored"  # the database file's catalog when `natality` is a typed view of its table


def raw_table(connection: duckdb.DuckDBPyConnection) -> str:
    """The rows as the database file stores them, whether or not `natality` is a typed view."""
    attached = connection.execute("SELECT 1 FROM duckdb_databases() WHERE database_name = ?",
                                  [STORED]).fetchone()
    return f"{STORED}.{LOCAL_TABLE}" if attached else LOCAL_TABLE


def waiting_for_writers(database: pathlib.Path, opening: Callable[[], T],
                        wait: Optional[float] = None) -> T:
    """`opening()` of `database`, retried while another process holds its write lock, for at
    most `wait` seconds (LOCK_WAIT_SECONDS); then WarehouseBusyError naming the file and the
    holder, one line, instead of DuckDB's IOException."""
    deadline = time.monotonic() + (LOCK_WAIT_SECONDS if wait is None else wait)
    while True:
        try:
            return opening()
        except duckdb.IOException as error:
            if "Could not set lock" not in str(error):
                raise
            if time.monotonic() >= deadline:
                holder = str(error).partition("Conflicting lock is held in ")[2]
                holder = holder.split(". See also")[0].strip() or "another process"
                raise WarehouseBusyError(
                    f"the warehouse {database} is held by another process ({holder}), such as "
                    "`python -m warehouse.months` appending months; run again when it has "
                    "finished") from None
            time.sleep(0.2)


def connect(
    database: pathlib.Path, source: Optional[str] = None, read_only: bool = True
) -> duckdb.DuckDBPyConnection:
    """A connection where `natality` is the generated table, or a view of the user's export.

    With `source` set the database file is not needed: an in-memory database exposes the files
    under the table's name, so the unchanged query runs on them. A database file whose table
    stores a column in another type than the real table (mother_age as DOUBLE) is read through
    the same typed view, so examples get the schema's types either way.
    """
    if source is not None:
        connection = duckdb.connect(":memory:")
        connection.execute(f"CREATE VIEW {LOCAL_TABLE} AS "
                           f"{_typed_select(connection, _source_reader(source))}")
    else:
        if not pathlib.Path(database).exists():
            raise FileNotFoundError(
                f"no warehouse at {database}; generate one with "
                f"`python -m warehouse.generator --out {database}`"
            )
        connection = waiting_for_writers(
            database, lambda: duckdb.connect(str(database), read_only=read_only))
        if read_only and casts(connection, LOCAL_TABLE):
            connection.close()
            connection = waiting_for_writers(
                database, lambda: _typed_view_of_file(pathlib.Path(database)))
    register_functions(connection)
    return connection


def _typed_view_of_file(database: pathlib.Path) -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect(":memory:")
    quoted = "'" + str(database).replace("'", "''") + "'"
    connection.execute(f"ATTACH {quoted} AS {STORED} (READ_ONLY)")
    connection.execute(f"CREATE VIEW {LOCAL_TABLE} AS "
                       f"{_typed_select(connection, f'{STORED}.{LOCAL_TABLE}')}")
    return connection
