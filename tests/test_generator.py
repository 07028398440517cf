"""The synthetic natality table's shape: columns, stored report, floors, ranges, nulls, grams.

One 200k-row table (seed 42) is generated per session (tests/conftest.py `natality_table`).
"""
from __future__ import annotations

import math
import pathlib
from typing import Tuple

import duckdb
import pytest

from tests.generator_checks import GRAMS_TO_POUNDS, QUERY_FILTER, ROWS, SEED, near_mean, scalar
from tests.tolerances import EPS64, gamma, rms_rel, share_tolerance, std_rel
from warehouse import calibration
from warehouse.generator import GeneratorReport, read_report


# --- schema and report ---------------------------------------------------------------------------
def test_column_types(natality_con: duckdb.DuckDBPyConnection) -> None:
    # Written out here, not read from the generator: the real table's names and types.
    expected = {
        "natality": "year BIGINT, month BIGINT, state VARCHAR, is_male BOOLEAN, "
                    "weight_pounds DOUBLE, plurality BIGINT, mother_age BIGINT, "
                    "gestation_weeks BIGINT, mother_married BOOLEAN, cigarette_use BOOLEAN",
        "natality_generator_info": "seed BIGINT, rows BIGINT, created_with VARCHAR, "
                                   "irreducible_rmse DOUBLE, irreducible_rmse_augmented DOUBLE, "
                                   "irreducible_rmse_query DOUBLE, weight_std DOUBLE",
    }
    for table, columns in expected.items():
        described = natality_con.execute(f"DESCRIBE {table}").fetchall()
        assert ", ".join(f"{row[0]} {row[1]}" for row in described) == columns, table
    assert scalar(natality_con, "SELECT count(*) FROM natality") == ROWS
    assert scalar(natality_con, "SELECT count(*) FROM natality_generator_info") == 1


def test_report_is_stored_and_read_back(
    natality_table: Tuple[pathlib.Path, GeneratorReport], tmp_path: pathlib.Path
) -> None:
    path, report = natality_table
    assert read_report(path) == report
    assert (report.seed, report.rows) == (SEED, ROWS)
    assert "numpy" in report.created_with and "duckdb" in report.created_with
    assert read_report(tmp_path / "missing.duckdb") is None
    bare = tmp_path / "bare.duckdb"
    with duckdb.connect(str(bare)) as connection:
        connection.execute("CREATE TABLE natality (year BIGINT)")
    assert read_report(bare) is None


def test_irreducible_error(natality_table: Tuple[pathlib.Path, GeneratorReport]) -> None:
    report = natality_table[1]
    assert 0.95 <= report.irreducible_rmse <= 1.08
    # Hiding sex and the exact count of multiples can only cost accuracy, and not much.
    floor, coarse = report.irreducible_rmse, report.irreducible_rmse_augmented
    assert floor < coarse < floor + 0.05
    expected_query = math.sqrt((floor**2 + coarse**2) / 2)
    # The same root of a mean of two squares, computed here and in the generator.
    assert report.irreducible_rmse_query == pytest.approx(expected_query, rel=rms_rel(2, EPS64))
    assert 1.28 <= report.weight_std <= 1.36


def test_floor_is_measured_on_the_query_rows(
    natality_con: duckdb.DuckDBPyConnection, natality_table: Tuple[pathlib.Path, GeneratorReport]
) -> None:
    """weight_std in the report is the std of exactly the rows the query keeps."""
    std, mean, n = natality_con.execute(f"""SELECT stddev_samp(weight_pounds), avg(weight_pounds),
                                         count(weight_pounds) FROM natality WHERE {QUERY_FILTER}"""
                               ).fetchone()
    # The generator's shifted sums of squares against DuckDB's updating algorithm.
    assert natality_table[1].weight_std == pytest.approx(std, rel=std_rel(n, mean, std, EPS64))


# --- ranges, nulls, whole grams ------------------------------------------------------------------
def test_ranges(natality_con: duckdb.DuckDBPyConnection) -> None:
    row = natality_con.execute(
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
    pound = calibration.GRAMS_TO_POUNDS
    assert row[10] >= 227 * pound and row[11] <= 8165 * pound
    assert row[13] == 51 and row[14] == row[15] == 2
    states = {r[0] for r in natality_con.execute("SELECT DISTINCT state FROM natality").fetchall()}
    assert states == set(calibration.STATE_BIRTHS)
    never_null = ("year", "month", "state", "is_male", "plurality", "mother_age", "mother_married")
    for column in never_null:
        assert scalar(natality_con, f"SELECT count(*) FROM natality WHERE {column} IS NULL") == 0, column


def test_weights_are_whole_grams(natality_con: duckdb.DuckDBPyConnection) -> None:
    grams = f"(weight_pounds / {GRAMS_TO_POUNDS})"
    off = scalar(natality_con, f"SELECT max(abs({grams} - round({grams}))) FROM natality")
    # grams * factor, then / factor: two roundings, relative to at most 8165 g.
    assert off <= 8165 * gamma(2, EPS64)


def test_null_shares(natality_con: duckdb.DuckDBPyConnection) -> None:
    gestation, weight, cigarette = natality_con.execute(
        """SELECT avg((gestation_weeks IS NULL)::INT), avg((weight_pounds IS NULL)::INT),
                  avg((cigarette_use IS NULL)::INT) FROM natality"""
    ).fetchone()
    # The generator's own shares: only the sample's error remains.
    assert gestation == pytest.approx(calibration.GESTATION_NULL_SHARE,
                                      abs=share_tolerance(calibration.GESTATION_NULL_SHARE, ROWS))
    assert weight == pytest.approx(calibration.WEIGHT_NULL_SHARE,
                                   abs=share_tolerance(calibration.WEIGHT_NULL_SHARE, ROWS))
    assert cigarette == pytest.approx(calibration.CIGARETTE_NULL_SHARE,
                                      abs=share_tolerance(calibration.CIGARETTE_NULL_SHARE, ROWS))
    null_mean, n, std = natality_con.execute(
        """SELECT avg(weight_pounds), count(weight_pounds), stddev_samp(weight_pounds)
           FROM natality WHERE gestation_weeks IS NULL""").fetchone()
    assert null_mean == pytest.approx(calibration.GESTATION_NULL_MEAN_WEIGHT,
                                      abs=near_mean(calibration.GESTATION_NULL_MEAN_WEIGHT, n, std))


def test_years_and_months(natality_con: duckdb.DuckDBPyConnection) -> None:
    recent = scalar(natality_con, "SELECT avg((year > 2000)::INT) FROM natality")
    # "About 10% of rows before 2001": a published share with two decimals, and the sample.
    assert recent == pytest.approx(0.90, abs=0.005 + share_tolerance(0.90, ROWS))
    assert scalar(natality_con, "SELECT count(DISTINCT year) FROM natality WHERE year > 2000") == 8
    assert scalar(natality_con, "SELECT count(DISTINCT year) FROM natality WHERE year <= 2000") == 32
    kept = scalar(natality_con, f"SELECT avg(({QUERY_FILTER})::INT) FROM natality")
    assert 0.88 < kept < 0.90


def test_extras_are_realistic(natality_con: duckdb.DuckDBPyConnection) -> None:
    married, smokers = natality_con.execute(
        "SELECT avg(mother_married::INT), avg(cigarette_use::INT) FROM natality"
    ).fetchone()
    assert 0.5 < married < 0.7
    known = scalar(natality_con, "SELECT count(cigarette_use) FROM natality")
    assert smokers == pytest.approx(calibration.SMOKING_SHARE,
                                    abs=share_tolerance(calibration.SMOKING_SHARE, known))
    teen, thirties = (
        scalar(natality_con, f"SELECT avg(mother_married::INT) FROM natality WHERE {where}")
        for where in ("mother_age < 20", "mother_age BETWEEN 30 AND 34")
    )
    assert teen < 0.3 < 0.7 < thirties
    # Smokers' babies are lighter; the effect is noise to the model's four features.
    gap = scalar(
        natality_con,
        """SELECT avg(weight_pounds) FILTER (WHERE cigarette_use)
                - avg(weight_pounds) FILTER (WHERE NOT cigarette_use) FROM natality""",
    )
    assert -0.5 < gap < -0.25
