"""Spans: months of births found in the warehouse, selected per run, fingerprinted for the cache."""
import json
import pathlib
import shutil

import duckdb
import pytest
from google.protobuf import json_format

from pipelines import pipeline
from pipelines.components import span_driver
from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
from pipelines.config import DataConfig
from common.errors import DataValidationError
from warehouse import engine, spans, sql


def exec_properties(component) -> dict:
    """The component's exec properties as the launcher hands them to the driver (protos as JSON)."""
    return {key: (json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR") else value)
            for key, value in component.exec_properties.items()}


def resolved(database: pathlib.Path, data: DataConfig) -> dict:
    from pipelines.components.duckdb_example_gen.driver import DuckDBSpanDriver

    component = DuckDBExampleGen(pipeline.input_config(data), database=database,
                                 range_config=pipeline.range_config(data),
                                 span_settings=data.split_layout())
    driver = DuckDBSpanDriver.__new__(DuckDBSpanDriver)  # resolving needs no metadata store
    return driver.resolve_exec_properties(exec_properties(component), None, None)


def patterns(properties: dict) -> dict:
    return {s["name"]: s["pattern"] for s in json.loads(properties["input_config"])["splits"]}


def append_month(database: pathlib.Path, span: int, like: int) -> int:
    """Adds span `span` to the warehouse: a copy of span `like`'s rows. Returns the rows added."""
    year, month = divmod(span, 100)
    connection = duckdb.connect(str(database))
    (added,) = connection.execute(
        f"INSERT INTO natality SELECT * REPLACE ({year} AS year, {month} AS month) "
        f"FROM natality WHERE year * 100 + month = {like}").fetchone()
    connection.close()
    return added


@pytest.fixture()
def warehouse_copy(small_warehouse, tmp_path) -> pathlib.Path:
    return pathlib.Path(shutil.copy(small_warehouse, tmp_path / "natality.duckdb"))


def test_spans_are_the_months_of_the_table(small_warehouse):
    found = spans.read_spans(small_warehouse)
    connection = engine.connect(small_warehouse)
    months = connection.execute(
        "SELECT year * 100 + month, COUNT(*) FROM natality GROUP BY 1 ORDER BY 1").fetchall()
    assert [(s.number, s.row_count) for s in found] == months


def test_selection_by_range_and_newest():
    table = [spans.Span(n, 1, ()) for n in (200011, 200012, 200101, 200102, 200103)]
    numbers = lambda chosen: [s.number for s in chosen]  # noqa: E731
    assert spans.select(table) == table
    assert numbers(spans.select(table, newest=2)) == [200102, 200103]
    assert numbers(spans.select(table, first=200012, last=200101)) == [200012, 200101]
    assert numbers(spans.select(table, first=200012, newest=10)) == numbers(table[1:])
    with pytest.raises(spans.SpanSelectionError, match="200011 to 200103"):
        spans.select(table, first=200104)


def test_span_query_reads_exactly_the_selected_months(small_warehouse):
    connection = engine.connect(small_warehouse)
    query = sql.base_query()
    rows_per_hashmonth = dict(connection.execute(
        f"SELECT hashmonth, COUNT(*) FROM ({sql.to_duckdb(query)}) GROUP BY 1").fetchall())
    chosen = spans.select(spans.read_spans(small_warehouse), newest=3)
    got = dict(connection.execute(
        f"SELECT hashmonth, COUNT(*) FROM ({sql.to_duckdb(spans.span_query(query, chosen))}) "
        "GROUP BY 1").fetchall())
    assert got == {spans.hashmonth(s.number): rows_per_hashmonth[spans.hashmonth(s.number)]
                   for s in chosen}


def test_fingerprint_follows_the_data(warehouse_copy):
    before = spans.read_spans(warehouse_copy)
    assert spans.fingerprint(spans.read_spans(warehouse_copy)) == spans.fingerprint(before)

    newest = before[-1].number
    assert append_month(warehouse_copy, newest + 89, like=newest) > 0  # 200812 -> 200901
    appended = spans.read_spans(warehouse_copy)
    assert appended[-1].number == newest + 89 and appended[:-1] == before
    assert spans.fingerprint(appended) != spans.fingerprint(before)

    connection = duckdb.connect(str(warehouse_copy))
    connection.execute("UPDATE natality SET weight_pounds = weight_pounds + 1 "
                       f"WHERE year * 100 + month = {newest} AND weight_pounds > 0 "
                       "AND rowid = (SELECT MIN(rowid) FROM natality "
                       f"WHERE year * 100 + month = {newest} AND weight_pounds > 0)")
    connection.close()
    edited = spans.read_spans(warehouse_copy)
    assert [s.row_count for s in edited] == [s.row_count for s in appended]
    assert spans.fingerprint(edited) != spans.fingerprint(appended)


def _edited(database: pathlib.Path, statement: str) -> None:
    connection = duckdb.connect(str(database))
    connection.execute(statement)
    connection.close()


def _month_rows(database: pathlib.Path, span: int) -> list:
    """The rowids and mother ages of a month's rows with a known sex, oldest row first."""
    connection = duckdb.connect(str(database), read_only=True)
    rows = connection.execute(
        "SELECT rowid, mother_age, is_male FROM natality WHERE year * 100 + month = ? "
        "AND is_male IS NOT NULL ORDER BY rowid", [span]).fetchall()
    connection.close()
    return rows


def test_fingerprint_sees_changes_that_keep_every_sum(warehouse_copy):
    """A boy's sex set to unknown keeps the count of boys; two mothers' ages swapped keep
    every column's sum: the query reads other rows either way, so the fingerprint changes."""
    before = spans.read_spans(warehouse_copy)
    newest = before[-1].number
    rows = _month_rows(warehouse_copy, newest)
    girl = next(rowid for rowid, _, is_male in rows if not is_male)
    _edited(warehouse_copy, f"UPDATE natality SET is_male = NULL WHERE rowid = {girl}")
    unknown = spans.read_spans(warehouse_copy)
    assert [s.row_count for s in unknown] == [s.row_count for s in before]
    assert unknown[-1].checksums[:5] == before[-1].checksums[:5], "the sums see no change"
    assert spans.fingerprint(unknown) != spans.fingerprint(before)

    (first, first_age, _), (second, second_age, _) = next(
        (a, b) for a, b in zip(rows, rows[1:]) if a[1] != b[1] and girl not in (a[0], b[0]))
    _edited(warehouse_copy, f"UPDATE natality SET mother_age = CASE rowid WHEN {first} THEN "
            f"{second_age} ELSE {first_age} END WHERE rowid IN ({first}, {second})")
    swapped = spans.read_spans(warehouse_copy)
    assert swapped[-1].checksums[:5] == unknown[-1].checksums[:5], "the sums see no change"
    assert spans.fingerprint(swapped) != spans.fingerprint(unknown)


def test_a_query_reading_a_column_the_fingerprint_does_not_is_refused():
    query = sql.base_query()
    assert spans.unfingerprinted_columns(query) == []
    reads_more = query.replace("AND gestation_weeks > 0",
                               "AND gestation_weeks > 0\n    AND cigarette_use IS NOT TRUE")
    assert reads_more != query
    assert spans.unfingerprinted_columns(reads_more) == ["cigarette_use"]
    with pytest.raises(span_driver.SpanSelectionFailed, match="cigarette_use.*rows_fingerprint"):
        span_driver.check_fingerprint_covers([query, reads_more])
    span_driver.check_fingerprint_covers([query])


def test_driver_reads_every_span_by_default_with_the_queries_unchanged(small_warehouse):
    data = DataConfig()
    properties = resolved(small_warehouse, data)
    found = spans.read_spans(small_warehouse)
    assert properties["span"] == found[-1].number
    assert properties["input_fingerprint"] == spans.fingerprint(found)
    assert patterns(properties) == sql.split_queries(
        sql.base_query(), data.split_buckets(), data.hash_buckets)


def test_driver_restricts_every_split_to_the_newest_spans(small_warehouse):
    data = DataConfig(num_spans=36)
    properties = resolved(small_warehouse, data)
    chosen = spans.select(spans.read_spans(small_warehouse), newest=36)
    assert properties["span"] == chosen[-1].number
    assert properties["input_fingerprint"].startswith(
        f"spans {chosen[0].number}-{chosen[-1].number} (36 months")
    split_queries = sql.split_queries(sql.base_query(), data.split_buckets(), data.hash_buckets)
    assert patterns(properties) == {name: spans.span_query(statement, chosen)
                                    for name, statement in split_queries.items()}


def test_too_few_spans_for_the_splits_fail_in_words(small_warehouse):
    with pytest.raises(DataValidationError, match=r"no month in split\(s\) .*eval"):
        resolved(small_warehouse, DataConfig(num_spans=1))
    with pytest.raises(span_driver.SpanSelectionFailed, match="No span"):
        resolved(small_warehouse, DataConfig(first_span=209901))


@pytest.mark.parametrize("settings,message", [
    (dict(first_span=200813), "--first-span must be a month"),
    (dict(last_span=2008), "--last-span must be a month"),
    (dict(num_spans=-1), "--num-spans"),
    (dict(last_span=200812, num_spans=3), "counts back from the newest"),
    (dict(first_span=200812, last_span=200801), "before --first-span"),
])
def test_span_flags_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**settings).span_range()


def test_range_config_is_tfx_vocabulary():
    newest = pipeline.range_config(DataConfig(num_spans=12, first_span=200301))
    assert (newest.rolling_range.num_spans, newest.rolling_range.start_span_number) == (
        12, 200301)
    fixed = pipeline.range_config(DataConfig(first_span=200301, last_span=200412))
    assert (fixed.static_range.start_span_number, fixed.static_range.end_span_number) == (
        200301, 200412)
    assert span_driver.span_range(json_format.MessageToJson(newest)) == (200301, 0, 12)
    assert span_driver.span_range(json_format.MessageToJson(fixed)) == (200301, 200412, 0)
    assert span_driver.span_range(None) == (0, 0, 0)


def test_runner_refuses_contradicting_span_flags_before_building(tmp_path, capsys):
    from tests.pipeline_helpers import run_local_runner_refusing

    assert run_local_runner_refusing(tmp_path, "--num-spans", "3", "--last-span", "200812") == 2
    assert "--num-spans counts back from the newest span" in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


@pytest.mark.slow
def test_a_run_whose_spans_leave_a_split_empty_exits_2_in_words(small_warehouse, tmp_path,
                                                                 capsys):
    from tests.pipeline_helpers import run_local_pipeline

    assert run_local_pipeline(tmp_path, "--database", str(small_warehouse),
                              "--num-spans", "1") == 2
    logged = capsys.readouterr().err
    assert "put no month in split(s)" in logged and "stopped before training" in logged
    assert not list((tmp_path / "root").glob("StatisticsGen*")), "nothing may run after it"
