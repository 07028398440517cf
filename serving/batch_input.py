"""Batch prediction's rows: (row index, line number or None, record) from a file or a query.

Files (JSON lines, CSV) are read line by line through serving.instances, so a record keeps its
line number for errors.jsonl. The warehouse and exports go through the training query's own
mapping, once per row (warehouse.sql.scoring_query): no "no ultrasound" copies, and a row the
query's WHERE would drop comes through as a RequestError naming the condition, to be counted
as rejected rather than lost.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, Optional, Tuple

from serving import instances, validation
from serving.training_query import TrainingData

Read = Tuple[int, Optional[int], instances.Record]


def is_csv(path: str) -> bool:
    lowered = path.lower()
    return lowered.endswith(".csv") or lowered.endswith(".csv.gz")


def read_file(path: str, limit: int = 0) -> Iterator[Read]:
    """Every record of a JSON-lines or CSV file (serving.instances reads the lines)."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as raw:
        text = instances.open_text(raw)
        records = instances.csv_records(text) if is_csv(path) else instances.json_records(text)
        for index, (line, record) in enumerate(records):
            if limit and index >= limit:
                return
            yield index, line, record


def scoring_query(split: Optional[str], limit: int = 0,
                  training: Optional[TrainingData] = None) -> str:
    """The training query's rows once each (DuckDB dialect), whole or one split; the query and
    the split's buckets are `training`'s, the model version's (serving/training_query.py), else
    the query file's and the default buckets.

    Whole, a row the query's filters drop is kept, to be rejected naming the filter; one split
    holds only rows that pass them, as the pipeline's split does.
    """
    from warehouse import sql

    training = training or TrainingData.of_checkout()
    query = sql.scoring_query(training.query)
    if split is not None:
        buckets = training.split_buckets
        if split not in buckets:
            raise ValueError(f"--split must be one of {', '.join(buckets)}, got {split!r}")
        query = sql.split_query(query, training.hash_buckets, buckets[split])
        # A split is a part of the training query's data: a row its filters drop is in none.
        query = f"SELECT * FROM ({query}) AS split_rows WHERE {sql.REJECTED_COLUMN} IS NULL"
    return sql.to_duckdb(query) + (f"\nLIMIT {int(limit)}" if limit else "")


def _query_record(row: Dict[str, Any]) -> instances.Record:
    from warehouse import sql

    condition = row.pop(sql.REJECTED_COLUMN)
    if condition is not None:
        return validation.RequestError(f"fails the training query's filter {condition}")
    return row


def read_query(database: Optional[str], source: Optional[str], split: Optional[str],
               limit: int = 0, training: Optional[TrainingData] = None) -> Iterator[Read]:
    """Every row of the scoring query, in the table's order, fetched in chunks."""
    import pathlib

    from warehouse import engine

    connection = engine.connect(pathlib.Path(database or ""), source=source)
    try:
        cursor = connection.execute(scoring_query(split, limit, training))
        names = [column[0] for column in cursor.description]
        index = 0
        while True:
            chunk = cursor.fetchmany(10_000)
            if not chunk:
                return
            for values in chunk:
                yield index, None, _query_record(dict(zip(names, values)))
                index += 1
    finally:
        connection.close()


def read_query_element(_: Any, database: Optional[str], source: Optional[str],
                       split: Optional[str], limit: int = 0,
                       training: Optional[TrainingData] = None) -> Iterator[Read]:
    """read_query as a FlatMap over a one-element start collection."""
    return read_query(database, source, split, limit, training)


def check_readable(input_file: Optional[str], warehouse: Optional[str], source: Optional[str],
                   split: Optional[str], training: TrainingData) -> None:
    """Fails on the launcher, in words, for what would otherwise fail inside a worker."""
    from apache_beam.io.filesystems import FileSystems

    if input_file:
        if not FileSystems.exists(input_file):
            raise FileNotFoundError(f"--input {input_file} does not exist")
        if os.path.isdir(input_file):
            raise ValueError(f"--input {input_file} is a directory: give one file")
        return
    import duckdb

    from warehouse.preflight import unmatched_source

    problem = unmatched_source(source)
    if problem:
        raise FileNotFoundError(problem)
    try:
        for _ in read_query(warehouse, source, split, 1, training):
            pass
    except duckdb.Error as error:  # its first line: the rest quotes the SQL with a caret
        raise ValueError(f"cannot run the training query on {source or warehouse}: "
                         f"{str(error).splitlines()[0]}") from None
