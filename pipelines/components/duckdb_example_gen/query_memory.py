"""Connections whose queries stay under a fixed memory limit and spill beyond it to a directory
of their own, which is removed when the last query using it has ended (or failed).

Each DuckDB instance needs a spill directory no other instance writes to: instances name their
spill files alike (`duckdb_temp_storage_DEFAULT-0.tmp`, ...), so two of them in one directory
(the in-memory instances of `--source`, one per split, queried at once) read each other's
blocks as corrupt. Connections to one database file in one process share one instance, whose
spill directory cannot change once used: they share the directory, counted here.
"""
from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
import threading
from typing import Dict, Iterator, Optional

import duckdb

from warehouse import engine

# What DuckDB may hold of a query (the training query's WITH clause, read twice, is
# materialized); the rest spills to disk, so the memory stays the same however many rows it has.
QUERY_MEMORY_LIMIT = "128MB"
SPILL_PREFIX = "babyweight-duckdb-"

_LOCK = threading.Lock()
_QUERIES_OF: Dict[str, int] = {}  # spill directory -> open connections using it


def _spill_directory(connection: duckdb.DuckDBPyConnection) -> str:
    """The directory `connection`'s instance spills to, one of ours, counted as used once more."""
    (current,) = connection.execute("SELECT current_setting('temp_directory')").fetchone()
    if pathlib.Path(current).name.startswith(SPILL_PREFIX):
        # An instance a connection of ours set up, still open: its directory cannot change.
        pathlib.Path(current).mkdir(exist_ok=True)
        spill = current
    else:
        spill = tempfile.mkdtemp(prefix=SPILL_PREFIX)
        connection.execute(f"SET temp_directory = '{spill}'")
    _QUERIES_OF[spill] = _QUERIES_OF.get(spill, 0) + 1
    return spill


def _release(spill: str) -> None:
    """Removes `spill` when no open connection of ours uses it any more."""
    _QUERIES_OF[spill] -= 1
    if not _QUERIES_OF[spill]:
        del _QUERIES_OF[spill]
        shutil.rmtree(spill, ignore_errors=True)


@contextlib.contextmanager
def bounded_connection(database: str, source: Optional[str]) -> Iterator[duckdb.DuckDBPyConnection]:
    """`engine.connect(database, source)` under QUERY_MEMORY_LIMIT (by default DuckDB may take
    most of the machine); it is closed, and its spill directory removed, on leaving."""
    connection = engine.connect(pathlib.Path(database), source)
    try:
        with _LOCK:
            spill = _spill_directory(connection)
    except BaseException:
        connection.close()
        raise
    try:
        connection.execute(f"SET memory_limit = '{QUERY_MEMORY_LIMIT}'")
        yield connection
    finally:
        connection.close()
        with _LOCK:
            _release(spill)
