"""The course query: one BigQuery file, translated for DuckDB, split by hashmonth without leaks."""
import os
import pathlib
import time

import duckdb
import pandas as pd
import pytest
import sqlglot

from modules import features
from pipelines.config import DataConfig
from warehouse import engine, sql

# BigQuery's documented FARM_FINGERPRINT values.
BIGQUERY_FINGERPRINTS = {
    "1footrue": -1541654101129638711,
    "2applefalse": 2794438866806483259,
    "3true": -4880158226897771312,
}


@pytest.fixture()
def memory_connection() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    engine.register_functions(connection)
    return connection


@pytest.mark.parametrize("text,expected", sorted(BIGQUERY_FINGERPRINTS.items()))
def test_farm_fingerprint_matches_bigquery(memory_connection, text, expected):
    assert engine.farm_fingerprint(text) == expected
    (value,) = memory_connection.execute("SELECT farm_fingerprint(?)", [text]).fetchone()
    assert value == expected


def test_farm_fingerprint_of_null_is_null(memory_connection):
    assert memory_connection.execute("SELECT farm_fingerprint(NULL)").fetchone() == (None,)


def test_hashmonth_is_fingerprint_of_year_and_month_strings(small_warehouse):
    connection = engine.connect(small_warehouse)
    rows = connection.execute(
        sql.to_duckdb("SELECT DISTINCT year, month, FARM_FINGERPRINT(CONCAT(CAST(year AS STRING), "
                      "CAST(month AS STRING))) AS h FROM `bigquery-public-data.samples.natality`")
    ).fetchall()
    assert len(rows) > 12
    for year, month, hashed in rows:
        assert hashed == engine.farm_fingerprint(f"{year}{month}")


def test_translation_keeps_the_course_query_and_maps_the_table():
    translated = sql.to_duckdb(sql.base_query())
    tree = sqlglot.parse_one(translated, read="duckdb")
    tables = {t.name for t in tree.find_all(sqlglot.exp.Table)}
    assert sql.LOCAL_TABLE in tables and "bigquery-public-data" not in translated
    assert "FARM_FINGERPRINT" in translated.upper()
    assert isinstance(tree, sqlglot.exp.Union) or tree.find(sqlglot.exp.Union) is not None
    for condition in ("year > 2000", "weight_pounds > 0", "mother_age > 0", "plurality > 0",
                      "gestation_weeks > 0"):
        assert condition in translated


def test_query_output_on_duckdb(small_warehouse):
    connection = engine.connect(small_warehouse)
    frame = connection.execute(sql.to_duckdb(sql.base_query())).df()
    (passing,) = connection.execute(
        "SELECT COUNT(*) FROM natality WHERE year > 2000 AND weight_pounds > 0 AND mother_age > 0"
        " AND plurality > 0 AND gestation_weeks > 0").fetchone()
    # The "no ultrasound" augmentation doubles every passing row.
    assert len(frame) == 2 * passing
    assert list(frame.columns) == [features.LABEL_KEY, "is_male", "mother_age", "plurality",
                                   "gestation_weeks", features.SPLIT_KEY]
    unknown = frame[frame.is_male == features.IS_MALE_UNKNOWN]
    assert len(unknown) >= passing
    assert set(unknown.plurality) <= {"Single(1)", features.PLURALITY_MULTIPLE_UNKNOWN}
    assert set(frame.plurality) <= set(features.PLURALITY.vocabulary)


def test_is_male_has_one_canonical_spelling(small_warehouse):
    """CAST(BOOL AS STRING) gives 'true'/'false' and fell out of the course's vocabulary."""
    connection = engine.connect(small_warehouse)
    spellings = {row[0] for row in connection.execute(
        f"SELECT DISTINCT is_male FROM ({sql.to_duckdb(sql.base_query())})").fetchall()}
    assert spellings == set(features.IS_MALE.vocabulary)
    # The naive cast really would have produced spellings outside the vocabulary.
    naive = {row[0] for row in connection.execute(sql.to_duckdb(
        "SELECT DISTINCT CAST(is_male AS STRING) FROM `bigquery-public-data.samples.natality`"
    )).fetchall()}
    assert naive and not naive & set(features.IS_MALE.vocabulary)


def test_splits_never_share_a_month_and_cover_everything(small_warehouse):
    data = DataConfig()
    connection = engine.connect(small_warehouse)
    queries = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)
    assert set(queries) == {"train", "eval", "test"}
    months = {}
    total = 0
    for name, statement in queries.items():
        frame = connection.execute(sql.to_duckdb(statement)).df()
        assert len(frame) > 0, name
        total += len(frame)
        months[name] = set(frame[features.SPLIT_KEY])
    names = sorted(months)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not months[first] & months[second], (first, second)
    (everything,) = connection.execute(
        f"SELECT COUNT(*) FROM ({sql.to_duckdb(sql.base_query())})").fetchone()
    assert total == everything


def test_sample_is_deterministic_and_about_the_asked_share(small_warehouse):
    connection = engine.connect(small_warehouse)
    full = sql.split_query(sql.base_query(), 10, (0, 10))
    sampled = sql.split_query(sql.base_query(), 10, (0, 10), sample_per_mille=100)
    (n_full,) = connection.execute(f"SELECT COUNT(*) FROM ({sql.to_duckdb(full)})").fetchone()
    first = connection.execute(sql.to_duckdb(sampled) + " ORDER BY ALL").fetchall()
    second = connection.execute(sql.to_duckdb(sampled) + " ORDER BY ALL").fetchall()
    assert first == second
    assert 0.07 * n_full < len(first) < 0.13 * n_full


def test_split_config_rejects_impossible_ranges():
    with pytest.raises(ValueError, match="train_buckets"):
        DataConfig(hash_buckets=10, train_buckets=10, eval_buckets=1).split_buckets()
    with pytest.raises(ValueError, match="sample_per_mille"):
        DataConfig(sample_per_mille=0).split_buckets()
    assert "test" not in DataConfig(train_buckets=8, eval_buckets=2).split_buckets()


def test_user_export_runs_the_same_query(small_warehouse, tmp_path):
    export = tmp_path / "natality.parquet"
    engine.connect(small_warehouse).execute(f"COPY natality TO '{export}' (FORMAT PARQUET)")
    query = sql.to_duckdb(sql.base_query()) + " ORDER BY ALL"
    from_export = engine.connect(tmp_path / "unused.duckdb", source=str(export)).execute(query)
    assert from_export.fetchall() == engine.connect(small_warehouse).execute(query).fetchall()


def test_connections_from_many_threads_share_the_function(small_warehouse):
    """Beam's multi-threaded DirectRunner opens connections to one file from several threads."""
    import concurrent.futures

    def fingerprint_once(_: int) -> int:
        connection = engine.connect(small_warehouse)
        try:
            return connection.execute("SELECT farm_fingerprint('2005')").fetchone()[0]
        finally:
            connection.close()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        values = set(pool.map(fingerprint_once, range(32)))
    assert values == {engine.farm_fingerprint("2005")}


def test_scoring_query_keeps_every_row_once_and_names_the_filter_it_fails(small_warehouse):
    connection = engine.connect(small_warehouse)
    scored = connection.execute(sql.to_duckdb(sql.scoring_query(sql.base_query()))).df()
    (rows,) = connection.execute("SELECT COUNT(*) FROM natality").fetchone()
    training = connection.execute(sql.to_duckdb(sql.base_query())).df()
    assert len(scored) == rows  # no "no ultrasound" copies, no row dropped
    passing = scored[scored[sql.REJECTED_COLUMN].isna()].drop(columns=sql.REJECTED_COLUMN)
    # The rows that pass, plus their "no ultrasound" copies, are exactly the training query's.
    copies = passing.assign(is_male=features.IS_MALE_UNKNOWN, plurality=passing.plurality.where(
        passing.plurality == features.PLURALITY_NAMES[0], features.PLURALITY_MULTIPLE_UNKNOWN))
    def rows_of(frame):
        return sorted(map(tuple, frame[list(training.columns)].astype(str).values))

    assert rows_of(pd.concat([passing, copies])) == rows_of(training)
    (weightless,) = connection.execute(
        "SELECT COUNT(*) FROM natality WHERE year > 2000 AND weight_pounds IS NULL").fetchone()
    reasons = scored[sql.REJECTED_COLUMN].value_counts()
    assert weightless and reasons["weight_pounds > 0"] >= weightless
    assert set(reasons.index) <= {"year > 2000", "weight_pounds > 0", "mother_age > 0",
                                  "plurality > 0", "gestation_weeks > 0"}


def test_table_values_are_mapped_by_the_query_itself(small_warehouse):
    from warehouse import table_values

    connection = engine.connect(small_warehouse)
    births = sql.feature_expressions(sql.base_query())
    pairs = connection.execute(
        f"SELECT DISTINCT plurality, {births['plurality']} AS mapped, is_male, "
        f"{births['is_male']} AS sex FROM natality").fetchall()
    assert {p for p, *_ in pairs} >= set(range(1, len(features.PLURALITY_NAMES) + 1))
    for plurality, mapped, is_male, sex in pairs:
        for spelled in (plurality, str(plurality), float(plurality)):
            raw = table_values.table_typed("plurality", spelled)
            assert table_values.query_value("plurality", raw) == mapped
        raw_sex = table_values.table_typed("is_male", str(is_male).upper())
        assert table_values.query_value("is_male", raw_sex) == sex
    assert table_values.table_typed("plurality", "Twins(2)") is None
    assert table_values.table_typed("plurality", True) is None
    assert table_values.table_typed("is_male", "yes") is None


def test_an_edited_query_file_is_read_again(tmp_path):
    """A process that runs the pipeline twice (the CT demo, a notebook) runs the file as it is."""
    import os

    from warehouse import spans

    query_file = tmp_path / "query.sql"
    query_file.write_text("SELECT 1 AS a")
    assert sql.base_query(query_file) == "SELECT 1 AS a"
    query_file.write_text("SELECT 22 AS a")  # another size
    assert sql.base_query(query_file) == "SELECT 22 AS a"
    query_file.write_text("SELECT 33 AS a")  # the same size, saved a second later
    status = query_file.stat()
    os.utime(query_file, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    assert sql.base_query(query_file) == spans.spans_query(query_file) == "SELECT 33 AS a"


def test_an_edit_within_one_coarse_timestamp_tick_is_read(tmp_path, monkeypatch):
    """Two same-size edits whose change times a coarse file system makes equal: the second is
    what is read, though the cache is keyed by change time and size."""
    query = tmp_path / "query.sql"
    query.write_text("SELECT 1 AS a")
    tick = os.stat(query).st_mtime_ns
    # Read within the tick whatever the machine's load: the clock as the file's change time.
    monkeypatch.setattr(sql, "_clock", lambda: tick / 1e9 + 0.5)
    assert sql.query_text(query) == "SELECT 1 AS a"
    query.write_text("SELECT 2 AS a")
    os.utime(query, ns=(tick, tick))  # the same tick
    assert sql.query_text(query) == "SELECT 2 AS a"


def test_a_file_older_than_a_tick_is_read_once_until_it_changes(tmp_path, monkeypatch):
    query = tmp_path / "query.sql"
    query.write_text("SELECT 1 AS a")
    old = time.time_ns() - 60 * 10**9
    os.utime(query, ns=(old, old))
    reads = []
    real = pathlib.Path.read_text
    monkeypatch.setattr(pathlib.Path, "read_text",
                        lambda self, *a, **k: reads.append(self) or real(self, *a, **k))
    assert [sql.query_text(query) for _ in range(3)] == ["SELECT 1 AS a"] * 3
    assert reads == [query]
    query.write_text("SELECT 3 AS a")  # a later edit: a later change time
    assert sql.query_text(query) == "SELECT 3 AS a"


def test_the_sample_picks_the_same_births_whether_numbers_are_stored_as_integers_or_floats(
        memory_connection):
    """A table loaded from files may hold mother_age or gestation_weeks as floats; the rows a
    sample keeps must not depend on it (nor on how an engine spells 7.0 as text)."""
    memory_connection.execute(
        "CREATE TABLE ints AS SELECT 2001 + i % 5 AS year, 1 + i % 12 AS month, "
        "CAST(5 + i % 5 AS DOUBLE) + (i % 3) / 4 AS weight_pounds, i % 2 = 0 AS is_male, "
        "CAST(15 + i % 30 AS BIGINT) AS mother_age, CAST(1 + i % 2 AS BIGINT) AS plurality, "
        "CAST(30 + i % 12 AS BIGINT) AS gestation_weeks FROM range(4000) t(i)")
    memory_connection.execute(
        "CREATE TABLE floats AS SELECT year, month, weight_pounds, is_male, "
        "CAST(mother_age AS DOUBLE) AS mother_age, plurality, "
        "CAST(gestation_weeks AS DOUBLE) AS gestation_weeks FROM ints")
    sampled = sql.split_query(sql.base_query(), 10, (0, 10), sample_per_mille=300)

    def kept(table: str):
        rows = memory_connection.execute(
            f"SELECT weight_pounds, is_male, CAST(mother_age AS BIGINT), plurality, "
            f"CAST(gestation_weeks AS BIGINT), hashmonth "
            f"FROM ({sql.to_duckdb(sampled, table)}) ORDER BY ALL").fetchall()
        return rows

    ints = kept("ints")
    assert ints and ints == kept("floats")
    (integral,) = memory_connection.execute(
        "SELECT COUNT(*) FROM ints WHERE weight_pounds = ROUND(weight_pounds)").fetchone()
    assert integral > 0, "some weights are whole pounds, which engines spell differently"


def test_the_sample_key_takes_every_value_the_pre_flight_check_lets_through(memory_connection):
    """The largest values the check accepts (a weight whose thousandths fit INT64, an age
    that is an INT64): the sampled query runs on them, on both engines' INT64 arithmetic."""
    memory_connection.execute(
        "CREATE TABLE big AS SELECT 2001 AS year, 1 AS month, 9.2e15 AS weight_pounds, "
        "TRUE AS is_male, CAST(9.2e18 AS BIGINT) AS mother_age, 1 AS plurality, "
        "CAST(9.2e18 AS BIGINT) AS gestation_weeks")
    sampled = sql.split_query(sql.base_query(), 10, (0, 10), sample_per_mille=999)
    memory_connection.execute(sql.to_duckdb(sampled, "big")).fetchall()  # no overflow
