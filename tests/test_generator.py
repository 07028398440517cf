"""The synthetic natality table matches the real table's published aggregates and knows its floor.

One 200k-row table (seed 42) is generated per module; the figures below are the calibration
targets from the real `bigquery-public-data.samples.natality`. Rare plurality groups have too
few rows at this size, so their calibration is checked on the model's exact expectations.
"""
from __future__ import annotations

import math
import pathlib
from typing import Dict, Iterator, List, Tuple

import duckdb
import pytest

from warehouse import generator
from warehouse.generator import GeneratorReport, generate, read_report

ROWS = 200_000
SEED = 42
GRAMS_TO_POUNDS = 0.00220462262185
QUERY_FILTER = (
    "year > 2000 AND weight_pounds > 0 AND mother_age > 0 AND plurality > 0 "
    "AND gestation_weeks > 0"
)


@pytest.fixture(scope="module")
def table(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tuple[pathlib.Path, GeneratorReport]]:
    path = tmp_path_factory.mktemp("natality") / "natality.duckdb"
    report = generate(path, rows=ROWS, seed=SEED, chunk_rows=80_000)  # three chunks
    yield path, report


@pytest.fixture(scope="module")
def con(table: Tuple[pathlib.Path, GeneratorReport]) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect(str(table[0]), read_only=True)
    yield connection
    connection.close()


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return con.execute(sql).fetchone()[0]


def groups(
    con: duckdb.DuckDBPyConnection, column: str, where: str = "TRUE"
) -> Dict[object, Tuple[float, float, int]]:
    """column value -> (share of rows in percent, mean weight, row count)."""
    rows = con.execute(
        f"""SELECT {column}, 100.0 * count(*) / sum(count(*)) OVER (), avg(weight_pounds), count(*)
            FROM natality WHERE {where} GROUP BY 1"""
    ).fetchall()
    return {key: (share, mean, count) for key, share, mean, count in rows}


def checksum(path: pathlib.Path) -> Tuple[int, int]:
    """Row count and an order-sensitive hash of every column of every row."""
    with duckdb.connect(str(path), read_only=True) as connection:
        columns = ", ".join(name for name, _ in generator.NATALITY_COLUMNS)
        return connection.execute(
            f"SELECT count(*), bit_xor(hash(rowid, {columns})) FROM natality"
        ).fetchone()


# --- schema and report ---------------------------------------------------------------------------
def test_column_types(con: duckdb.DuckDBPyConnection) -> None:
    described = {row[0]: row[1] for row in con.execute("DESCRIBE natality").fetchall()}
    assert described == {
        "year": "BIGINT",
        "month": "BIGINT",
        "state": "VARCHAR",
        "is_male": "BOOLEAN",
        "weight_pounds": "DOUBLE",
        "plurality": "BIGINT",
        "mother_age": "BIGINT",
        "gestation_weeks": "BIGINT",
        "mother_married": "BOOLEAN",
        "cigarette_use": "BOOLEAN",
    }
    info = {row[0]: row[1] for row in con.execute("DESCRIBE natality_generator_info").fetchall()}
    assert info == {
        "seed": "BIGINT",
        "rows": "BIGINT",
        "created_with": "VARCHAR",
        "irreducible_rmse": "DOUBLE",
        "irreducible_rmse_augmented": "DOUBLE",
        "irreducible_rmse_query": "DOUBLE",
        "weight_std": "DOUBLE",
    }
    assert scalar(con, "SELECT count(*) FROM natality") == ROWS
    assert scalar(con, "SELECT count(*) FROM natality_generator_info") == 1


def test_report_is_stored_and_read_back(
    table: Tuple[pathlib.Path, GeneratorReport], tmp_path: pathlib.Path
) -> None:
    path, report = table
    assert read_report(path) == report
    assert (report.seed, report.rows) == (SEED, ROWS)
    assert "numpy" in report.created_with and "duckdb" in report.created_with
    assert read_report(tmp_path / "missing.duckdb") is None
    bare = tmp_path / "bare.duckdb"
    with duckdb.connect(str(bare)) as connection:
        connection.execute("CREATE TABLE natality (year BIGINT)")
    assert read_report(bare) is None


def test_irreducible_error(table: Tuple[pathlib.Path, GeneratorReport]) -> None:
    report = table[1]
    assert 0.95 <= report.irreducible_rmse <= 1.08
    # Hiding sex and the exact count of multiples can only cost accuracy, and not much.
    floor, coarse = report.irreducible_rmse, report.irreducible_rmse_augmented
    assert floor < coarse < floor + 0.05
    expected_query = math.sqrt((floor**2 + coarse**2) / 2)
    assert report.irreducible_rmse_query == pytest.approx(expected_query, rel=1e-12)
    assert 1.28 <= report.weight_std <= 1.36


def test_floor_is_measured_on_the_query_rows(
    con: duckdb.DuckDBPyConnection, table: Tuple[pathlib.Path, GeneratorReport]
) -> None:
    """weight_std in the report is the std of exactly the rows the query keeps."""
    std = scalar(con, f"SELECT stddev_samp(weight_pounds) FROM natality WHERE {QUERY_FILTER}")
    assert table[1].weight_std == pytest.approx(std, rel=1e-9)


# --- ranges, nulls, whole grams ------------------------------------------------------------------
def test_ranges(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute(
        """SELECT min(year), max(year), min(month), max(month), min(mother_age), max(mother_age),
                  min(plurality), max(plurality), min(gestation_weeks), max(gestation_weeks),
                  min(weight_pounds), max(weight_pounds), count(DISTINCT month),
                  count(DISTINCT state), max(length(state)), min(length(state))
           FROM natality"""
    ).fetchone()
    assert row[0] >= 1969 and row[1] == 2008
    assert (row[2], row[3], row[12]) == (1, 12, 12)
    assert row[4] >= 10 and row[5] <= 54
    assert row[6] == 1 and row[7] <= 5
    assert row[8] >= 17 and row[9] <= 47
    assert row[10] >= 227 * GRAMS_TO_POUNDS - 1e-9 and row[11] <= 8165 * GRAMS_TO_POUNDS + 1e-9
    assert row[13] == 51 and row[14] == row[15] == 2
    states = {r[0] for r in con.execute("SELECT DISTINCT state FROM natality").fetchall()}
    assert states == set(generator.STATE_BIRTHS)
    never_null = ("year", "month", "state", "is_male", "plurality", "mother_age", "mother_married")
    for column in never_null:
        assert scalar(con, f"SELECT count(*) FROM natality WHERE {column} IS NULL") == 0, column


def test_weights_are_whole_grams(con: duckdb.DuckDBPyConnection) -> None:
    grams = f"(weight_pounds / {GRAMS_TO_POUNDS})"
    off = scalar(con, f"SELECT max(abs({grams} - round({grams}))) FROM natality")
    assert off < 1e-6


def test_null_shares(con: duckdb.DuckDBPyConnection) -> None:
    gestation, weight, cigarette = con.execute(
        """SELECT avg((gestation_weeks IS NULL)::INT), avg((weight_pounds IS NULL)::INT),
                  avg((cigarette_use IS NULL)::INT) FROM natality"""
    ).fetchone()
    assert gestation == pytest.approx(0.007, abs=0.001)
    assert weight == pytest.approx(0.001, abs=0.0003)
    assert cigarette == pytest.approx(generator.CIGARETTE_NULL_SHARE, abs=0.005)
    null_mean = scalar(con, "SELECT avg(weight_pounds) FROM natality WHERE gestation_weeks IS NULL")
    assert null_mean == pytest.approx(7.16, abs=0.1)  # ~1400 rows


def test_years_and_months(con: duckdb.DuckDBPyConnection) -> None:
    recent = scalar(con, "SELECT avg((year > 2000)::INT) FROM natality")
    assert recent == pytest.approx(0.90, abs=0.005)
    assert scalar(con, "SELECT count(DISTINCT year) FROM natality WHERE year > 2000") == 8
    assert scalar(con, "SELECT count(DISTINCT year) FROM natality WHERE year <= 2000") == 32
    kept = scalar(con, f"SELECT avg(({QUERY_FILTER})::INT) FROM natality")
    assert 0.88 < kept < 0.90


def test_extras_are_realistic(con: duckdb.DuckDBPyConnection) -> None:
    married, smokers = con.execute(
        "SELECT avg(mother_married::INT), avg(cigarette_use::INT) FROM natality"
    ).fetchone()
    assert 0.5 < married < 0.7
    assert smokers == pytest.approx(generator.SMOKING_SHARE, abs=0.005)
    teen, thirties = (
        scalar(con, f"SELECT avg(mother_married::INT) FROM natality WHERE {where}")
        for where in ("mother_age < 20", "mother_age BETWEEN 30 AND 34")
    )
    assert teen < 0.3 < 0.7 < thirties
    # Smokers' babies are lighter; the effect is noise to the model's four features.
    gap = scalar(
        con,
        """SELECT avg(weight_pounds) FILTER (WHERE cigarette_use)
                - avg(weight_pounds) FILTER (WHERE NOT cigarette_use) FROM natality""",
    )
    assert -0.5 < gap < -0.25


# --- calibration ---------------------------------------------------------------------------------
def test_overall_spread(con: duckdb.DuckDBPyConnection) -> None:
    std, mean = con.execute(
        "SELECT stddev_samp(weight_pounds), avg(weight_pounds) FROM natality"
    ).fetchone()
    assert 1.28 <= std <= 1.36
    assert mean == pytest.approx(7.23, abs=0.03)


def test_sex(con: duckdb.DuckDBPyConnection) -> None:
    by_sex = groups(con, "is_male")
    assert by_sex[True][0] == pytest.approx(51.2, abs=0.3)
    assert by_sex[False][1] == pytest.approx(7.10, abs=0.05)
    assert by_sex[True][1] == pytest.approx(7.35, abs=0.05)


def test_plurality(con: duckdb.DuckDBPyConnection) -> None:
    by_plurality = groups(con, "plurality")
    assert by_plurality[1][0] == pytest.approx(96.6, abs=0.3)
    assert by_plurality[2][0] == pytest.approx(3.2, abs=0.3)
    assert by_plurality[3][0] == pytest.approx(0.16, rel=0.3)
    assert by_plurality[1][1] == pytest.approx(7.31, abs=0.05)
    assert by_plurality[2][1] == pytest.approx(5.16, abs=0.05)
    assert by_plurality[3][1] == pytest.approx(3.69, abs=0.25)
    # ~20 quadruplets in 200k rows: they exist and are lighter than triplets.
    assert 5 <= by_plurality[4][2] <= 45
    assert by_plurality[4][1] < by_plurality[3][1]
    if 5 in by_plurality and 4 in by_plurality:
        assert by_plurality[5][2] < by_plurality[4][2]


def test_rare_pluralities_are_calibrated_exactly() -> None:
    """The model's exact marginal means, which the sample only estimates for rare groups."""
    expected = generator.expected_marginal_means()["plurality"]
    targets = {1: 7.31, 2: 5.16, 3: 3.69, 4: 2.88, 5: 2.54}
    for plurality, target in targets.items():
        assert expected[plurality] == pytest.approx(target, abs=0.01), plurality


def test_multiples_are_born_earlier(con: duckdb.DuckDBPyConnection) -> None:
    weeks = dict(
        con.execute("SELECT plurality, avg(gestation_weeks) FROM natality GROUP BY 1").fetchall()
    )
    assert weeks[1] > weeks[2] > weeks[3] > weeks[4]
    assert 34.5 < weeks[2] < 36.0


# week: (target share % or None, target mean weight, tolerance on the mean)
GESTATION_TARGETS: Dict[int, Tuple[object, float, float]] = {
    24: (None, 1.81, 0.25),
    28: (None, 3.40, 0.25),
    32: (None, 4.94, 0.25),
    34: (None, 5.72, 0.05),
    36: (None, 6.44, 0.05),
    37: (9.0, 6.86, 0.05),
    38: (19.0, 7.25, 0.05),
    39: (26.0, 7.53, 0.05),
    40: (20.0, 7.71, 0.05),
    41: (9.0, 7.80, 0.05),
    42: (None, 7.68, 0.05),
}


def test_gestation(con: duckdb.DuckDBPyConnection) -> None:
    by_week = groups(con, "gestation_weeks", where="gestation_weeks IS NOT NULL")
    for week, (share, mean, tolerance) in GESTATION_TARGETS.items():
        if share is not None:
            assert by_week[week][0] == pytest.approx(share, abs=0.3), week
        assert by_week[week][1] == pytest.approx(mean, abs=tolerance), week
    assert max(by_week, key=lambda w: by_week[w][0]) == 39
    assert max(by_week, key=lambda w: by_week[w][1]) == 41  # the peak weight
    mean_between = "SELECT avg(weight_pounds) FROM natality WHERE gestation_weeks BETWEEN {} AND {}"
    late = scalar(con, mean_between.format(43, 47))
    assert late == pytest.approx(7.6, abs=0.05)
    very_early = scalar(con, mean_between.format(17, 19))
    assert very_early == pytest.approx(1.05, abs=0.25)
    # Monotone rise to the peak (weeks with >= 200 rows, so noise cannot flip neighbours).
    rising = [by_week[w][1] for w in range(22, 42)]
    assert rising == sorted(rising)
    preterm = sum(by_week[w][0] for w in by_week if w < 37)
    assert 10.0 < preterm < 15.0


def test_gestation_calibration_is_exact() -> None:
    expected = generator.expected_marginal_means()["gestation_weeks"]
    for week, (_, mean, _) in GESTATION_TARGETS.items():
        assert expected[week] == pytest.approx(mean, abs=1e-9), week


def test_mother_age(con: duckdb.DuckDBPyConnection) -> None:
    by_age = groups(con, "mother_age")
    by_band: Dict[int, float] = {}
    for age, (share, _, _) in by_age.items():
        by_band[age // 5 * 5] = by_band.get(age // 5 * 5, 0.0) + share
    assert max(by_band, key=by_band.get) == 25
    plateau = scalar(
        con, "SELECT avg(weight_pounds) FROM natality WHERE mother_age BETWEEN 29 AND 35"
    )
    assert plateau == pytest.approx(7.36, abs=0.05)
    assert by_age[15][1] == pytest.approx(6.9, abs=0.15)  # ~900 rows
    assert by_age[45][1] == pytest.approx(6.95, abs=0.25)  # ~170 rows
    assert by_age[20][1] < by_age[25][1] < plateau
    assert by_age[40][1] < plateau


# --- determinism and file handling ---------------------------------------------------------------
def test_deterministic_for_a_seed(tmp_path: pathlib.Path) -> None:
    first, again, other = (tmp_path / f"{name}.duckdb" for name in ("first", "again", "other"))
    report_first = generate(first, rows=30_000, seed=7, chunk_rows=12_000)
    report_again = generate(again, rows=30_000, seed=7, chunk_rows=12_000)
    report_other = generate(other, rows=30_000, seed=8, chunk_rows=12_000)
    assert checksum(first) == checksum(again)
    assert report_first == report_again
    assert checksum(first) != checksum(other)
    assert report_first.irreducible_rmse != report_other.irreducible_rmse


def test_overwrites_only_its_tables_atomically(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "data" / "natality.duckdb"  # the parent is created
    generate(path, rows=5_000, seed=1)
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE TABLE keep_me AS SELECT 42 AS answer")
    progress: List[Tuple[int, int]] = []
    report = generate(
        path, rows=3_000, seed=2, chunk_rows=1_000, progress=lambda d, t: progress.append((d, t))
    )
    assert progress == [(1_000, 3_000), (2_000, 3_000), (3_000, 3_000)]
    with duckdb.connect(str(path), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM natality").fetchone()[0] == 3_000
        assert connection.execute("SELECT answer FROM keep_me").fetchone()[0] == 42
    assert read_report(path) == report
    assert sorted(p.name for p in path.parent.iterdir()) == ["natality.duckdb"]


def test_rejects_bad_arguments(tmp_path: pathlib.Path) -> None:
    for kwargs in ({"rows": 0}, {"chunk_rows": 0}, {"seed": -1}):
        with pytest.raises(ValueError):
            generate(tmp_path / "bad.duckdb", **kwargs)
    assert not list(tmp_path.iterdir())


def test_cli(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.duckdb"
    assert generator.main(["--rows", "2000", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "irreducible_rmse_query:" in printed
    report = read_report(out)
    assert report is not None and report.rows == 2000 and report.seed == 3


def test_cli_keeps_an_existing_warehouse_without_overwrite(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.duckdb"
    assert generator.main(["--rows", "2000", "--seed", "3", "--out", str(out), "--quiet"]) == 0
    before = out.read_bytes()
    assert generator.main(["--rows", "3000", "--seed", "4", "--out", str(out), "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert generator.main(["--rows", "3000", "--seed", "4", "--out", str(out), "--quiet",
                           "--overwrite"]) == 0
    report = read_report(out)
    assert report is not None and report.rows == 3000 and report.seed == 4
