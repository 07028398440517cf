"""The ExampleGen's shuffle: DuckDB's `ORDER BY hash(row)` order, sorted a bounded chunk at a time."""
import functools
import pathlib
import tempfile

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from pipelines.components.duckdb_example_gen import executor, shuffle
from pipelines.config import DataConfig
from warehouse import engine, sql


# The shuffle's order is the same for any split's query; what the tests below need of theirs
# is rows in every bucket (more than 2 x FINE_BUCKETS). One bucket in 20 of the session's
# warehouse holds about a third of the default eval split's rows: every deal and sort below
# costs in proportion to the rows (with rows_per_sort=1, a deal per row).
FEWER_ROWS = DataConfig(hash_buckets=20, train_buckets=18, eval_buckets=1)


def split_statement(name: str, data: DataConfig = DataConfig()) -> str:
    return sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)[name]


@functools.lru_cache(maxsize=None)
def order_by_hash(database: pathlib.Path, bigquery_sql: str):
    """The split's examples in the order of one DuckDB sort over the whole split (the same
    for every bound tried: made once, and only compared with)."""
    connection = engine.connect(database)
    statement = (f"SELECT * FROM ({sql.to_duckdb(bigquery_sql)}) AS result_row "
                 "ORDER BY hash(result_row)")
    encoder = example_coder.RecordBatchToExamplesEncoder()
    try:
        return [tf.train.Example.FromString(record)
                for batch in connection.execute(statement).fetch_record_batch(4096)
                for record in encoder.encode(executor.to_feature_lists(batch))]
    finally:
        connection.close()


def shuffled_examples(database: pathlib.Path, bigquery_sql: str):
    return [tf.train.Example.FromString(record)
            for batch in executor.serialized_batches(str(database), None, bigquery_sql, True)
            for record in batch]


@pytest.mark.parametrize("rows_per_sort", [1, 7, 233, 1_000_000])
def test_the_chunked_shuffle_gives_the_order_of_one_sort_by_hash(small_warehouse, monkeypatch,
                                                                  rows_per_sort):
    """Buckets dealt again down to single hashes, dealt again once, several buckets a sort, and
    every bucket in one sort (for FEWER_ROWS' split: about 1,100 rows, 8 a bucket)."""
    monkeypatch.setattr(shuffle_order_of_executor(), "shuffled",
                        functools.partial(shuffle.shuffled, rows_per_sort=rows_per_sort))
    statement = split_statement("eval", FEWER_ROWS)
    expected = order_by_hash(small_warehouse, statement)
    assert len(expected) > 2 * shuffle.FINE_BUCKETS  # every bucket holds rows
    assert shuffled_examples(small_warehouse, statement) == expected


def shuffle_order_of_executor():
    """The shuffle module as the executor calls it (patched there, seen by serialized_batches)."""
    return executor.shuffle_order


def test_groups_are_consecutive_buckets_of_at_most_rows_per_sort():
    counts = [4, 5, 2, 12, 3, 3, 4]
    groups = list(shuffle._groups(counts, 10))
    assert groups == [[0, 1], [2], [3], [4, 5, 6]]
    assert [bucket for group in groups for bucket in group] == list(range(len(counts)))
    # A group over the bound holds a single bucket, which the shuffle deals again.
    assert all(sum(counts[b] for b in group) <= 10 or len(group) == 1 for group in groups)


def keys_with_ties_and_clusters(rows: int, equal: int) -> np.ndarray:
    """Random 64-bit hashes, with `equal` equal ones (more than any bound tested) and 2,000 that
    share their top 40 bits (they land in one bucket at every level above those)."""
    generator = np.random.default_rng(5)
    keys = generator.integers(0, 2**64, rows, dtype=np.uint64)
    positions = generator.choice(rows, equal + 2_000, replace=False)
    ties, cluster = positions[:equal], positions[equal:]
    keys[ties] = keys[ties[0]]
    top_40_bits = keys[cluster[0]] & ~np.uint64((1 << 24) - 1)
    keys[cluster] = top_40_bits | (keys[cluster] >> np.uint64(40))
    return keys


class OpenWriters:
    """Counts the spool files open for writing at once, at pyarrow's call the shuffle makes."""

    def __init__(self, new_file):
        self._new_file = new_file
        self.open = self.most = 0

    def __call__(self, *args, **kwargs):
        writer = self._new_file(*args, **kwargs)
        self.open += 1
        self.most = max(self.most, self.open)
        close = writer.close

        def closed():
            self.open -= 1
            close()
        writer.close = closed
        return writer


@pytest.mark.parametrize("bucket_bits", [7, 3])
def test_any_size_gives_a_stable_sort_by_key_and_no_sort_over_the_bound(monkeypatch, bucket_bits):
    """25k rows with ROWS_PER_SORT 64 are more rows a bound than 60M with 262,144: every
    bucket is dealt again (with 3 bits, two levels deep; the cluster's, several more), and the
    equal hashes are streamed. The cost is a file per bucket dealt: more rows only deal more
    buckets of the same depths."""
    rows, rows_per_sort = 25_000, 64
    keys = keys_with_ties_and_clusters(rows, equal=3_000)
    table = pa.table({"row": pa.array(np.arange(rows)), shuffle.KEY: pa.array(keys)})
    sorts = []
    sort = shuffle.sorted_by_key
    monkeypatch.setattr(shuffle, "sorted_by_key",
                        lambda chunk: sorts.append(chunk.num_rows) or sort(chunk))
    writers = OpenWriters(shuffle.ipc.new_file)
    monkeypatch.setattr(shuffle.ipc, "new_file", writers)
    batches = list(shuffle.shuffled(iter(table.to_batches(max_chunksize=4096)), 1000,
                                    rows_per_sort=rows_per_sort, bucket_bits=bucket_bits))
    order = pa.Table.from_batches(batches).column("row").to_numpy()
    assert order.tolist() == np.argsort(keys, kind="stable").tolist()
    assert max(sorts) <= rows_per_sort
    assert sum(sorts) == rows - 3_000  # all but the equal hashes went through a sort
    assert max(batch.num_rows for batch in batches) <= 1000
    # The first deal opens a file for every bucket; no deal opens more.
    assert writers.most == 2 ** bucket_bits and writers.open == 0


def test_the_spool_is_removed_also_when_the_reader_stops_early(small_warehouse, monkeypatch):
    spool = pathlib.Path(tempfile.mkdtemp())
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(shuffle_order_of_executor(), "shuffled",
                        functools.partial(shuffle.shuffled, rows_per_sort=100))
    batches = executor.serialized_batches(str(small_warehouse), None,
                                          split_statement("eval", FEWER_ROWS), True)
    first = next(batches)
    assert first and list(spool.iterdir())  # the spool files exist while the rows are read
    batches.close()
    assert not list(spool.iterdir())
    spool.rmdir()


def test_the_key_column_is_not_in_the_examples():
    table = pa.table({"a": pa.array([3, 1, 2], pa.int64()),
                      shuffle.KEY: pa.array([30, 10, 20], pa.uint64())})
    (batch,) = shuffle.shuffled(iter(table.to_batches()), 10)
    assert batch.schema.names == ["a"]
    assert batch.column(0).to_pylist() == [1, 2, 3]
