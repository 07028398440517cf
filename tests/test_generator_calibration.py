"""The synthetic natality table matches the real table's published aggregates.

The figures below are the calibration targets from the real `bigquery-public-data.samples.natality`,
checked on the session's 200k-row table (tests/conftest.py `natality_table`). Rare plurality
groups have too few rows at this size, so their calibration is checked on the model's exact
expectations.
"""
from __future__ import annotations

from typing import Dict, Tuple

import duckdb
import pytest

from tests.generator_checks import (HALF_CENT, ROWS, groups, near_mean, near_share,
                                    solve_tolerance)
from tests.tolerances import sampling_tolerance
from warehouse.natality_model import expected_marginal_means


# --- calibration ---------------------------------------------------------------------------------
def test_overall_spread(natality_con: duckdb.DuckDBPyConnection) -> None:
    std, mean, n = natality_con.execute(
        "SELECT stddev_samp(weight_pounds), avg(weight_pounds), count(weight_pounds) FROM natality"
    ).fetchone()
    assert 1.28 <= std <= 1.36
    # 7.23 lb is the real table's mean over all years, which the generator does not calibrate
    # directly (it calibrates the margins by sex, plurality, week and age): the margins fix the
    # overall mean to within the sex margin's spread, 7.10..7.35 lb, about 0.13 either side.
    assert mean == pytest.approx(7.23, abs=0.13 + sampling_tolerance(std, n))


def test_sex(natality_con: duckdb.DuckDBPyConnection) -> None:
    by_sex = groups(natality_con, "is_male")
    assert by_sex[True][0] == pytest.approx(51.2, abs=near_share(51.2, ROWS))
    for male, target in ((False, 7.10), (True, 7.35)):
        _, mean, n, std = by_sex[male]
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), male


def test_plurality(natality_con: duckdb.DuckDBPyConnection) -> None:
    by_plurality = groups(natality_con, "plurality")
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
    expected = expected_marginal_means()["plurality"]
    targets = {1: 7.31, 2: 5.16, 3: 3.69, 4: 2.88, 5: 2.54}
    for plurality, target in targets.items():
        # Each multiple's penalty is solved for its figure; singles keep no penalty, and their
        # mean follows from the week margins and the multiples', so it meets its figure only as
        # well as the published tables agree with each other: to within their rounding.
        tolerance = solve_tolerance(target) if plurality > 1 else HALF_CENT
        assert expected[plurality] == pytest.approx(target, abs=tolerance), plurality


def test_multiples_are_born_earlier(natality_con: duckdb.DuckDBPyConnection) -> None:
    weeks = dict(
        natality_con.execute("SELECT plurality, avg(gestation_weeks) FROM natality GROUP BY 1").fetchall()
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


def test_gestation(natality_con: duckdb.DuckDBPyConnection) -> None:
    by_week = groups(natality_con, "gestation_weeks", where="gestation_weeks IS NOT NULL")
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
        mean, n, std = natality_con.execute(mean_between.format(*weeks)).fetchone()
        assert mean == pytest.approx(target, abs=near_mean(target, n, std)), weeks
    # Monotone rise to the peak (weeks with >= 200 rows, so noise cannot flip neighbours).
    rising = [by_week[w][1] for w in range(22, 42)]
    assert rising == sorted(rising)
    preterm = sum(by_week[w][0] for w in by_week if w < 37)
    assert 10.0 < preterm < 15.0


def test_gestation_calibration_is_exact() -> None:
    expected = expected_marginal_means()["gestation_weeks"]
    for week, (_, mean) in GESTATION_TARGETS.items():
        assert expected[week] == pytest.approx(mean, abs=solve_tolerance(mean)), week


def test_mother_age(natality_con: duckdb.DuckDBPyConnection) -> None:
    by_age = groups(natality_con, "mother_age")
    by_band: Dict[int, float] = {}
    for age, (share, _, _, _) in by_age.items():
        by_band[age // 5 * 5] = by_band.get(age // 5 * 5, 0.0) + share
    assert max(by_band, key=by_band.get) == 25
    plateau, n, std = natality_con.execute(
        "SELECT avg(weight_pounds), count(weight_pounds), stddev_samp(weight_pounds) "
        "FROM natality WHERE mother_age BETWEEN 29 AND 35"
    ).fetchone()
    assert plateau == pytest.approx(7.36, abs=near_mean(7.36, n, std))
    for age, target in ((15, 6.9), (45, 6.95)):
        _, mean, count, spread = by_age[age]
        assert mean == pytest.approx(target, abs=near_mean(target, count, spread)), age
    assert by_age[20][1] < by_age[25][1] < plateau
    assert by_age[40][1] < plateau
