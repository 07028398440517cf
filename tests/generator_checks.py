"""What the generator tests share: the table's size and seed, the query's filter, and tolerances.

The 200k-row table itself is the session fixture `natality_table` (tests/conftest.py), made once
for the files that check its shape (tests/test_generator.py) and its calibration
(tests/test_generator_calibration.py).
"""
from __future__ import annotations

import pathlib
from typing import Dict, Tuple

import duckdb

from tests.tolerances import EPS64, mean_rel, sampling_tolerance, share_tolerance
from warehouse import calibration
from warehouse.natality_model import solve_model
from warehouse.sampling import NATALITY_COLUMNS

ROWS = 200_000
SEED = 42
CHUNK_ROWS = 80_000  # three chunks
GRAMS_TO_POUNDS = 0.00220462262185
QUERY_FILTER = (
    "year > 2000 AND weight_pounds > 0 AND mother_age > 0 AND plurality > 0 "
    "AND gestation_weeks > 0"
)


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


# warehouse.natality_model.solve_model iterates until no multiple's penalty moves by more than this.
SOLVE_STOP = 1e-13


def solve_tolerance(target: float) -> float:
    """How close the solved model's exact margins are to the figures it was solved for: a
    penalty still moving by SOLVE_STOP moves a mean by at most that over the smallest factor
    the penalties leave (a mean divides by it), plus the roundings of a mean of the groups."""
    smallest = float(solve_model().plurality_factor.min())
    groups_count = len(calibration.PLURALITY_CALIBRATION) * len(calibration.GESTATION_CALIBRATION)
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
        columns = ", ".join(name for name, _ in NATALITY_COLUMNS)
        return connection.execute(
            f"SELECT count(*), bit_xor(hash(rowid, {columns})) FROM natality"
        ).fetchone()


def content_hash(path: pathlib.Path) -> str:
    """SHA-256 of both tables' every value in row order (the info table without the versions)."""
    import hashlib

    digest = hashlib.sha256()
    with duckdb.connect(str(path), read_only=True) as connection:
        for table, skip in (("natality", []), ("natality_generator_info", ["created_with"])):
            frame = connection.execute(f"SELECT * FROM {table} ORDER BY rowid").df()
            frame = frame.drop(columns=skip)
            digest.update(frame.to_csv(index=False, float_format="%.17g").encode())
    return digest.hexdigest()
