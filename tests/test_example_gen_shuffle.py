"""The ExampleGen's shuffle: DuckDB's `ORDER BY hash(row)` order, sorted a bounded chunk at a time."""
import pathlib
import tempfile

import pyarrow as pa
import pytest
import tensorflow as tf
from tfx_bsl.coders import example_coder

from pipelines.components.duckdb_example_gen import executor, shuffle
from pipelines.config import DataConfig
from warehouse import engine, sql


def split_statement(name: str) -> str:
    data = DataConfig()
    return sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)[name]


def order_by_hash(database: pathlib.Path, bigquery_sql: str):
    """The split's examples in the order of one DuckDB sort over the whole split."""
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


@pytest.mark.parametrize("rows_per_sort", [1, 700, 1_000_000])
def test_the_chunked_shuffle_gives_the_order_of_one_sort_by_hash(small_warehouse, monkeypatch,
                                                                  rows_per_sort):
    """One bucket a sort, several buckets a sort, and every bucket in one sort."""
    monkeypatch.setattr(shuffle, "ROWS_PER_SORT", rows_per_sort)
    statement = split_statement("eval")
    expected = order_by_hash(small_warehouse, statement)
    assert len(expected) > 2 * shuffle.FINE_BUCKETS  # every bucket holds rows
    assert shuffled_examples(small_warehouse, statement) == expected


def test_groups_are_consecutive_buckets_of_at_most_rows_per_sort(monkeypatch):
    monkeypatch.setattr(shuffle, "ROWS_PER_SORT", 10)
    counts = {0: 4, 1: 5, 2: 2, 5: 12, 6: 3, 7: 3, 9: 4}
    groups = list(shuffle._groups(counts))
    assert groups == [[0, 1], [2], [5], [6, 7, 9]]
    assert [bucket for group in groups for bucket in group] == sorted(counts)
    # A group over the bound holds a single bucket, which cannot be split.
    assert all(sum(counts[b] for b in group) <= 10 or len(group) == 1 for group in groups)


def test_the_spool_is_removed_also_when_the_reader_stops_early(small_warehouse, monkeypatch):
    spool = pathlib.Path(tempfile.mkdtemp())
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    monkeypatch.setattr(shuffle, "ROWS_PER_SORT", 100)
    batches = executor.serialized_batches(str(small_warehouse), None, split_statement("eval"),
                                          True)
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


def test_a_shuffled_split_s_query_runs_under_the_memory_cap(small_warehouse):
    """The query's materialized WITH clause spills beyond the cap instead of growing with rows."""
    batches = executor.serialized_batches(str(small_warehouse), None, split_statement("eval"),
                                          True)
    next(batches)
    # Connections to one file in one process share DuckDB's instance, and so its settings.
    (limit,) = engine.connect(small_warehouse).execute(
        "SELECT current_setting('memory_limit')").fetchone()
    batches.close()
    assert limit == "122.0 MiB"  # DuckDB's spelling of 128MB
    assert executor.QUERY_MEMORY_LIMIT == "128MB"
