"""A query's rows in the order of a hash of each row, in memory that does not grow with the rows.

Why not DuckDB's `ORDER BY hash(row)` over the whole split: its sort keeps as much of the split
as its memory limit allows, so the ExampleGen's peak grows with the rows until that limit, and its
merge pins a block per spilled run, so a lower limit fails on a larger table. Here the rows stream
out of DuckDB once with their hash and are dealt by the hash's top `bucket_bits` bits into as many
spool files (Arrow IPC, in a temporary directory). The files are read back in hash order,
consecutive ones grouped up to `rows_per_sort` rows, each group sorted by the hash in memory. A
file that alone holds more rows (past about 33M rows a split with the defaults) is dealt again, a
batch at a time, by the next bits in which its hashes differ (no more of them than it takes), into
sub-files read back the same way, so no sort ever holds more than `rows_per_sort` rows; a file
whose rows all have one hash needs no sort and is streamed as it is.
The concatenation is the order `ORDER BY hash(row)` gives: the files are ranges of the hash, in
increasing order, and each keeps its rows in the order they came (equal hashes stay in it).
"""
from __future__ import annotations

import dataclasses
import pathlib
import tempfile
from typing import Dict, Iterable, Iterator, List, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

KEY = "__shuffle_key"
KEY_BITS = 64  # DuckDB's hash is a UBIGINT
# Files one deal writes at once (the open-file count), and so the hash bits one deal reads.
BUCKET_BITS = 7
FINE_BUCKETS = 1 << BUCKET_BITS
# Rows sorted at once: what bounds the shuffle's memory.
ROWS_PER_SORT = 262_144


def keyed(statement: str) -> str:
    """`statement`'s rows with KEY, the hash DuckDB's `ORDER BY hash(row)` sorts by."""
    return f"SELECT *, hash(result_row) AS {KEY} FROM ({statement}) AS result_row"


@dataclasses.dataclass
class Bucket:
    """One spool file: its rows' count and the lowest and highest hash among them."""

    path: pathlib.Path
    rows: int
    low: int
    high: int


def _deal(batches: Iterable[Union[pa.RecordBatch, pa.Table]], directory: pathlib.Path, shift: int,
          bits: int) -> List[Bucket]:
    """Writes each row to the file of its hash's `bits` bits above `shift`; the non-empty files
    in hash order (the bits above these are the same for every row dealt)."""
    writers: Dict[int, ipc.RecordBatchFileWriter] = {}
    buckets: Dict[int, Bucket] = {}
    try:
        for batch in batches:
            if not batch.num_rows:
                continue
            keys = batch.column(KEY).to_numpy()
            index = ((keys >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            order = np.argsort(index, kind="stable")
            per_bucket = np.bincount(index, minlength=1 << bits)
            present = np.flatnonzero(per_bucket)
            starts = np.concatenate(([0], np.cumsum(per_bucket[present])[:-1]))
            dealt, dealt_keys = batch.take(pa.array(order)), keys[order]
            lows = np.minimum.reduceat(dealt_keys, starts)
            highs = np.maximum.reduceat(dealt_keys, starts)
            for number, start, low, high in zip(present, starts, lows, highs):
                rows = int(per_bucket[number])
                if number not in writers:
                    path = directory / f"{number:03d}.arrow"
                    writers[number] = ipc.new_file(str(path), batch.schema)
                    buckets[number] = Bucket(path, 0, int(low), int(high))
                writers[number].write(dealt.slice(int(start), rows))
                bucket = buckets[number]
                bucket.rows += rows
                bucket.low, bucket.high = min(bucket.low, int(low)), max(bucket.high, int(high))
    finally:
        for writer in writers.values():
            writer.close()
    return [buckets[number] for number in sorted(buckets)]


def _groups(counts: Sequence[int], rows_per_sort: int) -> Iterator[List[int]]:
    """Consecutive positions of `counts`, up to `rows_per_sort` rows a group (or one alone)."""
    group: List[int] = []
    rows = 0
    for position, count in enumerate(counts):
        if group and rows + count > rows_per_sort:
            yield group
            group, rows = [], 0
        group.append(position)
        rows += count
    if group:
        yield group


def _file_chunks(path: pathlib.Path, rows: int) -> Iterator[pa.Table]:
    """The file's rows in order, up to `rows` rows at a time (or one written batch)."""
    with pa.OSFile(str(path)) as source:
        reader = ipc.open_file(source)
        pending: List[pa.RecordBatch] = []
        held = 0
        for number in range(reader.num_record_batches):
            batch = reader.get_batch(number)
            if pending and held + batch.num_rows > rows:
                yield pa.Table.from_batches(pending).combine_chunks()
                pending, held = [], 0
            pending.append(batch)
            held += batch.num_rows
        if pending:
            yield pa.Table.from_batches(pending).combine_chunks()


def sorted_by_key(table: pa.Table) -> pa.Table:
    """`table`'s rows in KEY order, equal keys as they came: the one sort the shuffle does."""
    return table.take(table.column(KEY).to_numpy().argsort(kind="stable"))


def _in_order(buckets: List[Bucket], rows_per_sort: int, bits: int) -> Iterator[pa.Table]:
    """The rows of `buckets` (consecutive ranges of the hash) in KEY order; each file is
    removed once its rows are out."""
    for group in _groups([bucket.rows for bucket in buckets], rows_per_sort):
        first = buckets[group[0]]
        if first.rows > rows_per_sort:
            yield from _split(first, rows_per_sort, bits)
            continue
        tables = []
        for position in group:
            with pa.OSFile(str(buckets[position].path)) as source:
                tables.append(ipc.open_file(source).read_all())
        yield sorted_by_key(pa.concat_tables(tables).combine_chunks())
        for position in group:
            buckets[position].path.unlink()


def _split(bucket: Bucket, rows_per_sort: int, bits: int) -> Iterator[pa.Table]:
    """A file over `rows_per_sort` rows, in KEY order: dealt again by the highest bits in which
    its hashes differ, or streamed as it is when they are all one hash."""
    if bucket.low == bucket.high:
        yield from _file_chunks(bucket.path, rows_per_sort)
        bucket.path.unlink()
        return
    differing = (bucket.low ^ bucket.high).bit_length()  # bits above these are all the same
    # About twice the files the rows need, so that most come out under the bound at once.
    needed = (2 * -(-bucket.rows // rows_per_sort) - 1).bit_length()
    width = min(bits, differing, needed)
    directory = bucket.path.with_suffix("")
    directory.mkdir()
    parts = _deal(_file_chunks(bucket.path, rows_per_sort), directory, differing - width, width)
    bucket.path.unlink()
    yield from _in_order(parts, rows_per_sort, bits)
    directory.rmdir()


def shuffled(batches: Iterator[pa.RecordBatch], rows_per_batch: int,
             rows_per_sort: int = ROWS_PER_SORT,
             bucket_bits: int = BUCKET_BITS) -> Iterator[pa.RecordBatch]:
    """`batches` (which carry KEY) in KEY order, without KEY, at most `rows_per_batch` rows each.

    No sort holds more than `rows_per_sort` rows, and no deal writes more than
    2**`bucket_bits` files at once.
    """
    with tempfile.TemporaryDirectory(prefix="babyweight-shuffle-") as directory:
        buckets = _deal(batches, pathlib.Path(directory), KEY_BITS - bucket_bits, bucket_bits)
        for table in _in_order(buckets, rows_per_sort, bucket_bits):
            yield from table.drop([KEY]).to_batches(max_chunksize=rows_per_batch)
