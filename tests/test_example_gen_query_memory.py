"""The ExampleGen's DuckDB queries: memory capped, spilled to a directory of their own that is
removed after the query, also when it fails."""
import pathlib

import duckdb
import pytest

from pipelines.components.duckdb_example_gen import executor, query_memory
from warehouse import engine

# A sort larger than the cap set below, so that DuckDB writes spill files.
SPILLING_SORT = "SELECT i FROM range(2000000) AS r(i) ORDER BY hash(i)"


@pytest.fixture
def small_cap(monkeypatch):
    monkeypatch.setattr(query_memory, "QUERY_MEMORY_LIMIT", "32MB")


def spill_directory(connection: duckdb.DuckDBPyConnection) -> pathlib.Path:
    (directory,) = connection.execute("SELECT current_setting('temp_directory')").fetchone()
    return pathlib.Path(directory)


def test_the_query_spills_to_its_own_directory_which_is_removed_after(small_warehouse,
                                                                       small_cap):
    with query_memory.bounded_connection(str(small_warehouse), None) as connection:
        spill = spill_directory(connection)
        rows = connection.execute(SPILLING_SORT).fetch_record_batch(1000)
        rows.read_next_batch()
        assert spill.name.startswith(query_memory.SPILL_PREFIX)
        assert list(spill.iterdir())  # the sort spilled there
    assert not spill.exists()


def test_the_spill_directory_is_removed_when_the_query_fails(small_warehouse, small_cap):
    with pytest.raises(duckdb.Error, match="stop"):
        with query_memory.bounded_connection(str(small_warehouse), None) as connection:
            spill = spill_directory(connection)
            connection.execute(SPILLING_SORT).fetch_record_batch(1000).read_next_batch()
            spilled = list(spill.iterdir())
            connection.execute("SELECT error('stop')")
    assert spilled
    assert not spill.exists()


def test_the_spill_directory_is_removed_when_the_reader_stops(small_warehouse):
    batches = executor.serialized_batches(str(small_warehouse), None,
                                          "SELECT 1 AS a UNION ALL SELECT 2", True)
    assert next(batches)
    # Connections to one file in one process share DuckDB's instance, and so its settings.
    spill = spill_directory(engine.connect(small_warehouse))
    assert spill.name.startswith(query_memory.SPILL_PREFIX) and spill.is_dir()
    batches.close()
    assert not spill.exists()


def test_connections_to_one_file_share_the_directory_until_the_last_is_closed(small_warehouse):
    """They share one DuckDB instance, whose spill directory cannot change once used."""
    with query_memory.bounded_connection(str(small_warehouse), None) as first:
        with query_memory.bounded_connection(str(small_warehouse), None) as second:
            spill = spill_directory(first)
            assert spill_directory(second) == spill
        assert spill.is_dir()
    assert not spill.exists()


def test_in_memory_instances_get_a_directory_each(small_warehouse, tmp_path):
    """DuckDB instances name their spill files alike: in one directory they would read each
    other's blocks (the splits of a `--source` run are queried at once)."""
    export = tmp_path / "natality.parquet"
    reader = engine.connect(small_warehouse)
    reader.execute(f"COPY (SELECT * FROM {engine.raw_table(reader)} LIMIT 100) TO '{export}'")
    reader.close()
    with query_memory.bounded_connection(str(tmp_path / "none.duckdb"), str(export)) as first:
        with query_memory.bounded_connection(str(tmp_path / "none.duckdb"),
                                             str(export)) as second:
            directories = {spill_directory(first), spill_directory(second)}
            assert len(directories) == 2 and all(d.is_dir() for d in directories)
    assert not any(d.exists() for d in directories)


@pytest.mark.parametrize("shuffle", [True, False])
def test_either_path_s_query_runs_under_the_memory_cap(small_warehouse, shuffle):
    """Shuffled splits and the hash-partitioned path (TFX's generic one) alike: the query's
    materialized WITH clause spills beyond the cap instead of growing with the rows."""
    batches = executor.serialized_batches(str(small_warehouse), None,
                                          "SELECT 1 AS a UNION ALL SELECT 2", shuffle)
    next(batches)
    # Connections to one file in one process share DuckDB's instance, and so its settings.
    (limit,) = engine.connect(small_warehouse).execute(
        "SELECT current_setting('memory_limit')").fetchone()
    batches.close()
    assert limit == "122.0 MiB"  # DuckDB's spelling of 128MB
    assert query_memory.QUERY_MEMORY_LIMIT == "128MB"
