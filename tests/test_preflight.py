"""Bad exports stop before the pipeline starts, with every problem named (column, value, row)."""
import pathlib

import duckdb
import pytest

from common.errors import DataValidationError
from tests import pipeline_helpers
from tests.conftest import SMALL_ROWS
from warehouse import engine, preflight, sql

NULLS = ", ".join(f"CAST(NULL AS {kind}) AS \"{name}\"" for name, kind in
                  preflight.query_columns(sql.base_query()))


@pytest.fixture(scope="module")
def export(small_warehouse, tmp_path_factory):
    """Writes `select` over the warehouse (twice over: past DuckDB's CSV type sniffing)."""
    out_dir = tmp_path_factory.mktemp("exports")
    connection = duckdb.connect(str(small_warehouse), read_only=True)
    connection.execute("CREATE TEMP VIEW doubled AS SELECT * FROM natality UNION ALL "
                       "SELECT * FROM natality")

    def write(select: str, name: str) -> str:
        path = out_dir / name
        options = "(FORMAT PARQUET)" if name.endswith(".parquet") else "(HEADER, DELIMITER ',')"
        connection.execute(f"COPY ({select}) TO '{path}' {options}")
        return str(path)

    yield write
    connection.close()


def problem(source: str) -> str:
    with pytest.raises(DataValidationError) as caught:
        preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query())
    return str(caught.value)


def with_string_at(row: int) -> str:
    return ("SELECT * REPLACE (CASE WHEN rn = %d THEN 'forty' ELSE CAST(mother_age AS VARCHAR) "
            "END AS mother_age) FROM (SELECT *, row_number() OVER () AS rn FROM doubled) "
            "ORDER BY rn" % row)


def test_the_query_reads_the_columns_the_readme_lists():
    assert dict(preflight.query_columns(sql.base_query())) == {
        "year": "BIGINT", "month": "BIGINT", "is_male": "BOOLEAN", "mother_age": "BIGINT",
        "plurality": "BIGINT", "gestation_weeks": "BIGINT", "weight_pounds": "DOUBLE"}


@pytest.mark.parametrize("row", [29_996, 4])
def test_a_string_in_a_numeric_csv_column_is_named_with_its_row(export, row):
    message = problem(export(with_string_at(row), f"string_{row}.csv"))
    assert "column 'mother_age'" in message and "'forty'" in message
    assert f"row {row:,}" in message and f"1 of {2 * SMALL_ROWS:,}" in message


def test_a_string_in_a_parquet_column_is_named(export):
    message = problem(export(with_string_at(7), "string.parquet"))
    assert "column 'mother_age'" in message and "'forty'" in message and "row 7 " in message


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_null_in_every_column_says_no_rows_are_left(export, suffix):
    message = problem(export(f"SELECT {NULLS} FROM range(50)", f"nulls.{suffix}"))
    assert "no rows left after the query's filters" in message
    assert "every value is NULL in" in message and "weight_pounds" in message


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_an_empty_table_says_so(export, suffix):
    message = problem(export("SELECT * FROM natality LIMIT 0", f"empty.{suffix}"))
    assert "has no rows" in message


def test_is_male_spelled_m_and_f_lists_the_accepted_spellings(export):
    message = problem(export(
        "SELECT * REPLACE (CASE WHEN is_male THEN 'M' ELSE 'F' END AS is_male) FROM natality",
        "sex.csv"))
    assert "column 'is_male'" in message
    assert all(spelling in message for spelling in preflight.IS_MALE_SPELLINGS)
    assert "'M'" in message or "'F'" in message


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_integral_floats_are_accepted_and_read_as_integers(export, suffix):
    source = export("SELECT * REPLACE (CAST(mother_age AS DOUBLE) AS mother_age, "
                    "CAST(gestation_weeks AS DOUBLE) AS gestation_weeks) FROM natality",
                    f"floats.{suffix}")
    rows = preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query())
    connection = engine.connect(pathlib.Path("unused.duckdb"), source)
    types = dict(connection.execute(f"SELECT column_name, column_type FROM (DESCRIBE "
                                    f"{sql.LOCAL_TABLE})").fetchall())
    (count,) = connection.execute(f"SELECT count(*) FROM {sql.LOCAL_TABLE}").fetchone()
    connection.close()
    assert types["mother_age"] == types["gestation_weeks"] == "BIGINT"
    assert rows == count


def test_a_non_integral_float_is_named(export):
    message = problem(export(
        "SELECT * REPLACE (CASE WHEN rowid = 2 THEN mother_age + 0.5 ELSE mother_age END "
        "AS mother_age) FROM natality ORDER BY rowid", "halves.csv"))
    assert "column 'mother_age'" in message and "row 3 " in message and ".5'" in message


def test_every_missing_column_is_named(export):
    message = problem(export("SELECT * EXCLUDE (gestation_weeks, plurality) FROM natality",
                             "missing.csv"))
    assert "missing columns gestation_weeks, plurality" in message


def test_a_pattern_matching_no_file_is_named(tmp_path):
    message = problem(str(tmp_path / "natality-*.parquet"))
    assert "matches no file" in message


def test_an_existing_path_with_pattern_characters_is_read_as_itself(export, tmp_path):
    """'[v2]' would be a pattern matching 'v' or '2'; DuckDB reads the existing path as itself."""
    folder = tmp_path / "exports [v2]"
    folder.mkdir()
    source = export("SELECT * FROM natality", "plain.csv")
    path = folder / "natality.csv"
    path.write_bytes(pathlib.Path(source).read_bytes())
    assert preflight.unmatched_source(str(path)) is None
    assert preflight.check(pathlib.Path("unused.duckdb"), str(path), sql.base_query()) == SMALL_ROWS
    assert "matches no file" in preflight.unmatched_source(str(folder / "other.csv"))


def test_the_runner_exits_2_before_any_component(export, tmp_path, capsys):
    source = export(with_string_at(29_996), "late.csv")
    assert pipeline_helpers.run_local_runner_refusing(tmp_path, "--source", source) == 2
    logged = capsys.readouterr().err
    assert "'forty'" in logged and "row 29,996" in logged and "Traceback" not in logged
    assert not (tmp_path / "root").exists(), "no component may have run"


def test_the_runner_names_a_pattern_matching_no_file(tmp_path, capsys):
    source = str(tmp_path / "exports" / "natality-*.csv")
    assert pipeline_helpers.run_local_runner_refusing(tmp_path, "--source", source) == 2
    assert "matches no file" in capsys.readouterr().err


def database_with(small_warehouse: pathlib.Path, path: pathlib.Path, select: str) -> pathlib.Path:
    connection = duckdb.connect(str(path))
    connection.execute(f"ATTACH '{small_warehouse}' AS generated (READ_ONLY)")
    connection.execute(f"CREATE TABLE natality AS {select.format(table='generated.natality')}")
    connection.close()
    return path


AGE_AS_DOUBLE = ("SELECT * REPLACE (CAST(mother_age AS DOUBLE) + {extra} AS mother_age) "
                 "FROM {table}")


def test_a_database_storing_integral_floats_is_read_as_integers(small_warehouse, tmp_path):
    database = database_with(small_warehouse, tmp_path / "floats.duckdb",
                             AGE_AS_DOUBLE.replace("{extra}", "0"))
    rows = preflight.check(database, None, sql.base_query())
    connection = engine.connect(database)
    types = dict(connection.execute(f"SELECT column_name, column_type FROM (DESCRIBE "
                                    f"{sql.LOCAL_TABLE})").fetchall())
    query = sql.to_duckdb(sql.base_query())
    typed = connection.execute(f"SELECT sum(mother_age), count(*) FROM ({query})").fetchone()
    connection.close()
    reference = engine.connect(small_warehouse)
    assert types["mother_age"] == "BIGINT"
    assert typed == reference.execute(f"SELECT sum(mother_age), count(*) FROM ({query})"
                                      ).fetchone()
    assert rows == reference.execute("SELECT count(*) FROM natality").fetchone()[0]
    reference.close()


SEX_AS_NUMBER = ("SELECT * REPLACE (CASE WHEN rowid = 5 THEN {odd} WHEN is_male THEN 1 "
                 "WHEN NOT is_male THEN 0 END{cast} AS is_male) FROM {table} ORDER BY rowid")


@pytest.mark.parametrize("odd, cast", [(2, ""), (-1, "::TINYINT"), (2.0, "::DOUBLE")])
def test_a_number_other_than_1_or_0_in_is_male_is_named(export, odd, cast):
    source = export(SEX_AS_NUMBER.format(odd=odd, cast=cast, table="natality"),
                    f"sex_{odd}{cast.strip(':')}.parquet")
    message = problem(source)
    assert "column 'is_male'" in message and f"1 of {SMALL_ROWS:,}" in message
    assert f"first {str(odd)!r} at" in message
    assert "row 6 of" in message and "1 = male, 2 = female" in message
    connection = engine.connect(pathlib.Path("unused.duckdb"), source)
    with pytest.raises(duckdb.Error, match=f"column is_male: {odd} is not 1 or 0"):
        connection.execute("SELECT is_male FROM natality").fetchall()
    connection.close()


def test_is_male_stored_as_1_and_0_reads_as_booleans(export, small_warehouse):
    source = export(SEX_AS_NUMBER.format(odd="1 - is_male::INT", cast="", table="natality"),
                    "sex_ok.parquet")
    preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query())
    connection = engine.connect(pathlib.Path("unused.duckdb"), source)
    read = connection.execute("SELECT is_male FROM natality").fetchall()
    connection.close()
    generated = duckdb.connect(str(small_warehouse), read_only=True)
    expected = generated.execute("SELECT CASE WHEN rowid = 5 THEN NOT is_male ELSE is_male END "
                                 "FROM natality ORDER BY rowid").fetchall()
    generated.close()
    assert read == expected


@pytest.mark.parametrize("column, select, shown, row", [
    ("mother_age", "SELECT * REPLACE (CAST(mother_age AS DOUBLE) + CASE WHEN rowid = 4 THEN 0.5 "
     "ELSE 0 END AS mother_age) FROM {table}", ".5'", 5),
    ("is_male", SEX_AS_NUMBER.format(odd=2, cast="", table="{table}"), "'2'", 6),
    ("weight_pounds", "SELECT * REPLACE (CASE WHEN rowid = 4 THEN 'nan'::DOUBLE ELSE "
     "weight_pounds END AS weight_pounds) FROM {table}", "'nan'", 5),
], ids=["a fraction of an age, not rounded", "a sex coded 2", "a weight that is NaN"])
def test_a_bad_value_stored_in_a_database_is_named(small_warehouse, tmp_path, column, select,
                                                   shown, row):
    database = database_with(small_warehouse, tmp_path / "stored.duckdb", select)
    with pytest.raises(DataValidationError) as caught:
        preflight.check(database, None, sql.base_query())
    message = str(caught.value)
    assert f"column '{column}'" in message and shown in message and f"row {row}" in message


def with_value_at(column: str, text: str, kind: str = "VARCHAR") -> str:
    """The table with `column` at row 4 holding `text` read as `kind`, else its own value."""
    return (f"SELECT * REPLACE (CASE WHEN rowid = 3 THEN CAST('{text}' AS {kind}) ELSE "
            f"CAST({column} AS {kind}) END AS {column}) FROM natality ORDER BY rowid")


def duckdb_text(text: str, kind: str) -> str:
    """How DuckDB writes `text` read as `kind`: the spelling a message quotes."""
    return duckdb.execute(f"SELECT CAST(CAST('{text}' AS {kind}) AS VARCHAR)").fetchone()[0]


# (column, file format, how the file stores it) -> values the pre-flight must name.
NOT_READ_AS_IS = {
    ("mother_age", "csv", "VARCHAR"): ("30.0000000000000001", "NaN", "1e400"),
    ("gestation_weeks", "csv", "VARCHAR"): ("99999999999999999999",),
    ("mother_age", "parquet", "DOUBLE"): ("nan", "-inf", "1e300"),
    ("weight_pounds", "csv", "VARCHAR"): ("NaN", "inf", "1e400", "7_5", "1_000"),
    ("weight_pounds", "parquet", "DOUBLE"): ("nan",),
    ("weight_pounds", "parquet", "FLOAT"): ("inf",),
}


@pytest.mark.parametrize("column, text, kind, suffix", [
    (column, text, kind, suffix)
    for (column, suffix, kind), texts in NOT_READ_AS_IS.items() for text in texts])
def test_a_non_finite_or_inexact_number_is_named(export, column, text, kind, suffix):
    source = export(with_value_at(column, text, kind), f"{column}_{text}_{kind}.{suffix}")
    message = problem(source)
    value = text if kind == "VARCHAR" else duckdb_text(text, kind)
    assert f"column '{column}': 1 of {SMALL_ROWS:,}" in message
    assert f"first {value!r} at row 4 of {source}" in message
    connection = engine.connect(pathlib.Path("unused.duckdb"), source)
    if column != "weight_pounds" or kind != "DOUBLE":  # a DOUBLE is read as stored
        with pytest.raises(duckdb.Error, match=f"column {column}: .* is not a"):
            connection.execute(f"SELECT {column} FROM natality").fetchall()
    connection.close()


@pytest.mark.parametrize("text", ["9007199254740993", " +9007199254740993.00 "])
def test_whole_number_text_is_read_exactly(export, text):
    """Past 2**53 a DOUBLE would round the value; it is parsed as an integer instead."""
    source = export(with_value_at("mother_age", text), f"exact_{len(text)}.csv")
    preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query())
    connection = engine.connect(pathlib.Path("unused.duckdb"), source)
    (read,) = connection.execute("SELECT mother_age FROM natality WHERE mother_age > 1000"
                                 ).fetchone()
    connection.close()
    assert read == int(text.strip().split(".")[0])


NULL_MONTHS = "rowid IN (3, 10, 11)"


def kept_rows(small_warehouse, where: str) -> list:
    """The 1-based rows matching `where` that the query's filters keep, computed here."""
    connection = duckdb.connect(str(small_warehouse), read_only=True)
    rows = connection.execute(f"SELECT rowid + 1 FROM natality WHERE ({where}) AND "
                              f"{sql.rows_filter(sql.base_query())} ORDER BY rowid").fetchall()
    connection.close()
    return [row for (row,) in rows]


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_rows_with_no_month_are_named_not_left_out_of_every_split(export, small_warehouse,
                                                                  suffix):
    kept = kept_rows(small_warehouse, NULL_MONTHS)
    assert kept, "the test needs a kept row with no month"
    source = export(f"SELECT * REPLACE (CASE WHEN {NULL_MONTHS} THEN NULL ELSE month END AS "
                    "month) FROM natality ORDER BY rowid", f"no_month.{suffix}")
    message = problem(source)
    assert f"column 'month': {len(kept):,} rows the query keeps have no month" in message
    assert f"first at row {kept[0]:,} of {source}" in message and "no split" in message


def test_a_stored_table_with_no_month_is_named(small_warehouse, tmp_path):
    kept = kept_rows(small_warehouse, "rowid = 7")
    assert kept, "the test needs a kept row with no month"
    database = database_with(small_warehouse, tmp_path / "no_month.duckdb",
                             "SELECT * REPLACE (CASE WHEN rowid = 7 THEN NULL ELSE "
                             "CAST(month AS DOUBLE) END AS month) FROM {table}")
    with pytest.raises(DataValidationError) as caught:
        preflight.check(database, None, sql.base_query())
    assert f"column 'month': {len(kept)} rows" in str(caught.value)
    assert f"first at row {kept[0]}" in str(caught.value)


def test_rows_the_filters_drop_may_have_no_month(export):
    source = export("SELECT * REPLACE (CASE WHEN rowid = 3 THEN NULL ELSE month END AS month, "
                    "CASE WHEN rowid = 3 THEN 1999 ELSE year END AS year) FROM natality",
                    "old_no_month.parquet")
    preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query())


def test_the_span_sums_checked_are_those_spans_sql_computes():
    """Each INT64 sum of spans.sql but the fingerprint (its parts are reduced modulo a prime)."""
    import sqlglot
    from sqlglot import exp

    from warehouse import spans

    tree = sqlglot.parse_one(spans.spans_query(), read="bigquery")
    sums = {alias.alias: {column.name for column in alias.find_all(exp.Column)}
            for alias in tree.find_all(exp.Alias)
            if alias.find(exp.Sum) and alias.alias != "rows_fingerprint"}
    assert sums == {alias: {figure.column} for alias, figure in preflight.SPAN_SUMS.items()}


MAX_BIGINT = (1 << 63) - 1
SAME_MONTH = "year = 2005, month = 3"


@pytest.mark.parametrize("update, shown, row", [
    ("weight_pounds = 1e16", "column 'weight_pounds': 2 of 20,000 values are not small enough "
     "for INT64 (spans.sql sums a month's weights in thousandths of a pound), first '1e+16'", 6),
    (f"mother_age = {MAX_BIGINT}, {SAME_MONTH}", "column 'mother_age': its sum is beyond INT64 "
     f"in 1 month(s) (spans.sql sums a month's mother_age, mother_age_sum), first span 200503",
     6),
    (f"weight_pounds = 9e15, {SAME_MONTH}", "column 'weight_pounds': its sum is beyond INT64 in "
     "1 month(s)", 6),
    ("year = 92233720368547759", "columns 'year' and 'month': 2 of 20,000 rows have a span "
     "(spans.sql's year * 100 + month) beyond INT64, first year 92233720368547759, month", 6),
], ids=["a weight in thousandths", "a month's ages", "a month's weights", "a span"])
def test_a_value_too_large_for_the_span_sums_is_named(small_warehouse, tmp_path, update, shown,
                                                      row):
    """spans.sql's INT64 arithmetic would fail on it in the span driver (a traceback), and so
    would BigQuery's on its sums."""
    from warehouse import spans

    database = tmp_path / "large.duckdb"
    database.write_bytes(small_warehouse.read_bytes())
    connection = duckdb.connect(str(database))
    connection.execute(f"UPDATE natality SET {update} WHERE rowid IN (5, 6)")
    connection.close()
    with pytest.raises(DataValidationError) as caught:
        preflight.check(database, None, sql.base_query())
    assert shown in str(caught.value) and f"at row {row}" in str(caught.value)


def test_a_weight_whose_thousandths_fit_int64_is_read(export):
    source = export(with_value_at("weight_pounds", "9e15"), "large_weight.csv")
    text = export(with_value_at("weight_pounds", "1e16"), "too_large_weight.csv")
    assert preflight.check(pathlib.Path("unused.duckdb"), source, sql.base_query()) == SMALL_ROWS
    from warehouse import spans

    assert spans.read_spans(pathlib.Path("unused.duckdb"), source)
    assert f"first '1e+16' at row 4 of {text}" in problem(text)
