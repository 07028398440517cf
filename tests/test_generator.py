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

from tests.tolerances import (EPS64, gamma, mean_rel, rms_rel, sampling_tolerance,
                              share_tolerance, std_rel)
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


# A published figure with two decimals (7.31 lb) stands for anything within half its last digit;
# the generator draws whole grams (rounding moves a weight by at most half a gram, in pounds).
HALF_CENT = 0.005
HALF_GRAM_POUNDS = 0.5 * GRAMS_TO_POUNDS


def near_mean(target: float, n: int, std: float) -> float:
    """Tolerance of a sample mean of n weights (spread std) around a published two-decimal
    figure the generator is calibrated to: the figure's rounding, whole grams, and four
    standard errors of the sample (tests.tolerances.sampling_tolerance)."""
    return HALF_CENT + HALF_GRAM_POUNDS + sampling_tolerance(std, n)


def near_share(share_pct: float, n: int, decimals: int = 1) -> float:
    """Tolerance of a share in percent of n rows around a published figure with `decimals`."""
    return 0.5 * 10.0 ** -decimals + 100 * share_tolerance(share_pct / 100, n)


# warehouse.generator._solve_model iterates until no multiple's penalty moves by more than this.
SOLVE_STOP = 1e-13


def solve_tolerance(target: float) -> float:
    """How close the solved model's exact margins are to the figures it was solved for: a
    penalty still moving by SOLVE_STOP moves a mean by at most that over the smallest factor
    the penalties leave (a mean divides by it), plus the roundings of a mean of the groups."""
    smallest = float(generator._solve_model().plurality_factor.min())
    groups_count = len(generator.PLURALITY_CALIBRATION) * len(generator.GESTATION_CALIBRATION)
    return target * (SOLVE_STOP / smallest + mean_rel(groups_count, EPS64))


def scalar(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    return con.execute(sql).fetchone()[0]


def groups(
    con: duckdb.DuckDBPyConnection, column: str, where: str = "TRUE"
) -> Dict[object, Tuple[float, float, int]]:
    """column value -> (share of rows in percent, mean weight, row count, weight std)."""
    rows = con.execute(
        f"""SELECT {column}, 100.0 * count(*) / sum(count(*)) OVER (), avg(weight_pounds), count(*),
                   stddev_samp(weight_pounds)
            FROM natality WHERE {where} GROUP BY 1"""
    ).fetchall()
    return {key: (share, mean, count, std) for key, share, mean, count, std in rows}


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
    # The same root of a mean of two squares, computed here and in the generator.
    assert report.irreducible_rmse_query == pytest.approx(expected_query, rel=rms_rel(2, EPS64))
    assert 1.28 <= report.weight_std <= 1.36


def test_floor_is_measured_on_the_query_rows(
    con: duckdb.DuckDBPyConnection, table: Tuple[pathlib.Path, GeneratorReport]
) -> None:
    """weight_std in the report is the std of exactly the rows the query keeps."""
    std, mean, n = con.execute(f"""SELECT stddev_samp(weight_pounds), avg(weight_pounds),
                                         count(weight_pounds) FROM natality WHERE {QUERY_FILTER}"""
                               ).fetchone()
    # The generator's shifted sums of squares against DuckDB's updating algorithm.
    assert table[1].weight_std == pytest.approx(std, rel=std_rel(n, mean, std, EPS64))


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
    # The same float64 products as the generator's, so the bounds hold exactly.
    pound = generator.GRAMS_TO_POUNDS
    assert row[10] >= 227 * pound and row[11] <= 8165 * pound
    assert row[13] == 51 and row[14] == row[15] == 2
    states = {r[0] for r in con.execute("SELECT DISTINCT state FROM natality").fetchall()}
    assert states == set(generator.STATE_BIRTHS)
    never_null = ("year", "month", "state", "is_male", "plurality", "mother_age", "mother_married")
    for column in never_null:
        assert scalar(con, f"SELECT count(*) FROM natality WHERE {column} IS NULL") == 0, column


def test_weights_are_whole_grams(con: duckdb.DuckDBPyConnection) -> None:
    grams = f"(weight_pounds / {GRAMS_TO_POUNDS})"
    off = scalar(con, f"SELECT max(abs({grams} - round({grams}))) FROM natality")
    # grams * factor, then / factor: two roundings, relative to at most 8165 g.
    assert off <= 8165 * gamma(2, EPS64)


def test_null_shares(con: duckdb.DuckDBPyConnection) -> None:
    gestation, weight, cigarette = con.execute(
        """SELECT avg((gestation_weeks IS NULL)::INT), avg((weight_pounds IS NULL)::INT),
                  avg((cigarette_use IS NULL)::INT) FROM natality"""
    ).fetchone()
    # The generator's own shares: only the sample's error remains.
    assert gestation == pytest.approx(generator.GESTATION_NULL_SHARE,
                                      abs=share_tolerance(generator.GESTATION_NULL_SHARE, ROWS))
    assert weight == pytest.approx(generator.WEIGHT_NULL_SHARE,
                                   abs=share_tolerance(generator.WEIGHT_NULL_SHARE, ROWS))
    assert cigarette == pytest.approx(generator.CIGARETTE_NULL_SHARE,
                                      abs=share_tolerance(generator.CIGARETTE_NULL_SHARE, ROWS))
    null_mean, n, std = con.execute(
        """SELECT avg(weight_pounds), count(weight_pounds), stddev_samp(weight_pounds)
           FROM natality WHERE gestation_weeks IS NULL""").fetchone()
    assert null_mean == pytest.approx(generator.GESTATION_NULL_MEAN_WEIGHT,
                                      abs=near_mean(generator.GESTATION_NULL_MEAN_WEIGHT, n, std))


def test_years_and_months(con: duckdb.DuckDBPyConnection) -> None:
    recent = scalar(con, "SELECT avg((year > 2000)::INT) FROM natality")
    # "About 10% of rows before 2001": a published share with two decimals, and the sample.
    assert recent == pytest.approx(0.90, abs=0.005 + share_tolerance(0.90, ROWS))
    assert scalar(con, "SELECT count(DISTINCT year) FROM natality WHERE year > 2000") == 8
    assert scalar(con, "SELECT count(DISTINCT year) FROM natality WHERE year <= 2000") == 32
    kept = scalar(con, f"SELECT avg(({QUERY_FILTER})::INT) FROM natality")
    assert 0.88 < kept < 0.90


def test_extras_are_realistic(con: duckdb.DuckDBPyConnection) -> None:
    married, smokers = con.execute(
        "SELECT avg(mother_married::INT), avg(cigarette_use::INT) FROM natality"
    ).fetchone()
    assert 0.5 < married < 0.7
    known = scalar(con, "SELECT count(cigarette_use) FROM natality")
    assert smokers == pytest.approx(generator.SMOKING_SHARE,
                                    abs=share_tolerance(generator.SMOKING_SHARE, known))
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
    std, mean, n = con.execute(
        "SELECT stddev_samp(weight_pounds), avg(weight_pounds), count(weight_pounds) FROM natality"
    ).fetchone()
    assert 1.28 <= std <= 1.36
    # 7.23 lb is the real table's mean over all years, which the generator does not calibrate
    # directly (it calibrates the margins by sex, plurality, week and age): the margins fix the
    # overall mean to within the sex margin's spread, 7.10..7.35 lb, about 0.13 either side.
    assert mean == pytest.approx(7.23, abs=0.13 + sampling_tolerance(std, n))


def test_sex(con: duckdb.DuckDBPyConnection) -> None:
    by_sex = groups(con, "is_male")
    assert by_sex[True][0] == pytest.approx(51.2, abs=near_share(51.2, ROWS))
    for male, target in ((False, 7.10), (True, 7.35)):
        _, mean, n, std = by_sex[male]
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), male


def test_plurality(con: duckdb.DuckDBPyConnection) -> None:
    by_plurality = groups(con, "plurality")
    for plurality, share, decimals in ((1, 96.6, 1), (2, 3.2, 1), (3, 0.16, 2)):
        assert by_plurality[plurality][0] == pytest.approx(
            share, abs=near_share(share, ROWS, decimals)), plurality
    for plurality, target in ((1, 7.31), (2, 5.16), (3, 3.69)):
        _, mean, n, std = by_plurality[plurality]
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), plurality
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
        # Each multiple's penalty is solved for its figure; singles keep no penalty, and their
        # mean follows from the week margins and the multiples', so it meets its figure only as
        # well as the published tables agree with each other: to within their rounding.
        tolerance = solve_tolerance(target) if plurality > 1 else HALF_CENT
        assert expected[plurality] == pytest.approx(target, abs=tolerance), plurality


def test_multiples_are_born_earlier(con: duckdb.DuckDBPyConnection) -> None:
    weeks = dict(
        con.execute("SELECT plurality, avg(gestation_weeks) FROM natality GROUP BY 1").fetchall()
    )
    assert weeks[1] > weeks[2] > weeks[3] > weeks[4]
    assert 34.5 < weeks[2] < 36.0


# week: (target share % or None, target mean weight)
GESTATION_TARGETS: Dict[int, Tuple[object, float]] = {
    24: (None, 1.81),
    28: (None, 3.40),
    32: (None, 4.94),
    34: (None, 5.72),
    36: (None, 6.44),
    37: (9.0, 6.86),
    38: (19.0, 7.25),
    39: (26.0, 7.53),
    40: (20.0, 7.71),
    41: (9.0, 7.80),
    42: (None, 7.68),
}


def test_gestation(con: duckdb.DuckDBPyConnection) -> None:
    by_week = groups(con, "gestation_weeks", where="gestation_weeks IS NOT NULL")
    rows = sum(count for _, _, count, _ in by_week.values())
    for week, (share, target) in GESTATION_TARGETS.items():
        got_share, mean, n, std = by_week[week]
        if share is not None:  # published as whole percents
            assert got_share == pytest.approx(share, abs=near_share(share, rows, 0)), week
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), week
    assert max(by_week, key=lambda w: by_week[w][0]) == 39
    assert max(by_week, key=lambda w: by_week[w][1]) == 41  # the peak weight
    mean_between = ("SELECT avg(weight_pounds), count(weight_pounds), stddev_samp(weight_pounds) "
                    "FROM natality WHERE gestation_weeks BETWEEN {} AND {}")
    for weeks, target in (((43, 47), 7.6), ((17, 19), 1.05)):
        mean, n, std = con.execute(mean_between.format(*weeks)).fetchone()
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), weeks
    # Monotone rise to the peak (weeks with >= 200 rows, so noise cannot flip neighbours).
    rising = [by_week[w][1] for w in range(22, 42)]
    assert rising == sorted(rising)
    preterm = sum(by_week[w][0] for w in by_week if w < 37)
    assert 10.0 < preterm < 15.0


def test_gestation_calibration_is_exact() -> None:
    expected = generator.expected_marginal_means()["gestation_weeks"]
    for week, (_, mean) in GESTATION_TARGETS.items():
        assert expected[week] == pytest.approx(mean, abs=solve_tolerance(mean)), week


def test_mother_age(con: duckdb.DuckDBPyConnection) -> None:
    by_age = groups(con, "mother_age")
    by_band: Dict[int, float] = {}
    for age, (share, _, _, _) in by_age.items():
        by_band[age // 5 * 5] = by_band.get(age // 5 * 5, 0.0) + share
    assert max(by_band, key=by_band.get) == 25
    plateau, n, std = con.execute(
        "SELECT avg(weight_pounds), count(weight_pounds), stddev_samp(weight_pounds) "
        "FROM natality WHERE mother_age BETWEEN 29 AND 35"
    ).fetchone()
    assert plateau == pytest.approx(7.36, abs=near_mean(7.36, n, std))
    for age, target in ((15, 6.9), (45, 6.95)):
        _, mean, count, spread = by_age[age]
        assert mean == pytest.approx(target, abs=near_mean(target, count, spread)), age
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
