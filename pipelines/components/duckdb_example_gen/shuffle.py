"""A query's rows in the order of a hash of each row, in memory that does not grow with the rows.

Why not DuckDB's `ORDER BY hash(row)` over the whole split: its sort keeps as much of the split
as its memory limit allows, so the ExampleGen's peak grows with the rows until that limit, and its
merge pins a block per spilled run, so a lower limit fails on a larger table. Here the rows stream
out of DuckDB once with their hash, are dealt by the hash's top bits into FINE_BUCKETS spool files
(Arrow IPC, in a temporary directory), and the files are read back in hash order, consecutive ones
grouped up to ROWS_PER_SORT rows, each group sorted by the hash in memory. The concatenation is the
order `ORDER BY hash(row)` gives: the buckets are ranges of the hash, in increasing order.
"""
from __future__ import annotations

import contextlib
import pathlib
import tempfile
from typing import Dict, Iterator, List

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

KEY = "__shuffle_key"
BUCKET_BITS = 7
FINE_BUCKETS = 1 << BUCKET_BITS
# Rows sorted at once (at least one bucket's): what bounds the shuffle's memory.
ROWS_PER_SORT = 262_144


def keyed(statement: str) -> str:
    """`statement`'s rows with KEY, the hash DuckDB's `ORDER BY hash(row)` sorts by."""
    return f"SELECT *, hash(result_row) AS {KEY} FROM ({statement}) AS result_row"


def _deal(batches: Iterator[pa.RecordBatch], spool: pathlib.Path) -> Dict[int, int]:
    """Writes each batch's rows to its hash bucket's file; the rows in each bucket."""
    counts: Dict[int, int] = {}
    with contextlib.ExitStack() as files:
        writers: Dict[int, ipc.RecordBatchFileWriter] = {}
        for batch in batches:
            buckets = (batch.column(KEY).to_numpy() >> np.uint64(64 - BUCKET_BITS)).astype(
                np.int64)
            order = np.argsort(buckets, kind="stable")
            per_bucket = np.bincount(buckets, minlength=FINE_BUCKETS)
            dealt = batch.take(pa.array(order))
            start = 0
            for bucket in np.flatnonzero(per_bucket):
                rows = int(per_bucket[bucket])
                if bucket not in writers:
                    writers[bucket] = files.enter_context(
                        ipc.new_file(str(spool / f"{bucket:03d}.arrow"), batch.schema))
                writers[bucket].write_batch(dealt.slice(start, rows))
                counts[bucket] = counts.get(bucket, 0) + rows
                start += rows
    return counts


def _groups(counts: Dict[int, int]) -> Iterator[List[int]]:
    """Consecutive buckets, in hash order, up to ROWS_PER_SORT rows a group (or one bucket)."""
    group: List[int] = []
    rows = 0
    for bucket in sorted(counts):
        if group and rows + counts[bucket] > ROWS_PER_SORT:
            yield group
            group, rows = [], 0
        group.append(bucket)
        rows += counts[bucket]
    if group:
        yield group


def shuffled(batches: Iterator[pa.RecordBatch], rows_per_batch: int) -> Iterator[pa.RecordBatch]:
    """`batches` (which carry KEY) in KEY order, without KEY, at most `rows_per_batch` rows each."""
    with tempfile.TemporaryDirectory(prefix="babyweight-shuffle-") as directory:
        spool = pathlib.Path(directory)
        counts = _deal(batches, spool)
        for group in _groups(counts):
            tables = []
            for bucket in group:
                with pa.OSFile(str(spool / f"{bucket:03d}.arrow")) as source:
                    tables.append(ipc.open_file(source).read_all())
            table = pa.concat_tables(tables).combine_chunks()
            table = table.take(table.column(KEY).to_numpy().argsort(kind="stable"))
            table = table.drop([KEY])
            yield from table.to_batches(max_chunksize=rows_per_batch)
            for bucket in group:
                (spool / f"{bucket:03d}.arrow").unlink()
