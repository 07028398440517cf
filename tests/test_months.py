"""Appended months: after the newest month, never over one, deterministic for a seed, and
shifted as asked while a baby's weight still follows the generator's model."""
from __future__ import annotations

import duckdb
import numpy as np
import pytest

from warehouse import generator, months

BASE = dict(months=12, rows_per_month=2000, first_span=200101)


def _facts(database, where):
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute(
            "SELECT COUNT(*), AVG(mother_age), AVG(gestation_weeks), AVG((plurality > 1)::INT), "
            f"MIN(year * 100 + month), MAX(year * 100 + month) FROM natality WHERE {where}"
        ).fetchone()


def test_months_append_after_the_newest_and_shift_the_population(tmp_path):
    database = tmp_path / "w.duckdb"
    assert months.append(database, **BASE) == [200100 + m for m in range(1, 13)]
    shift = months.Shift(older_mothers=5, multiples_factor=4, gestation_shift=-2)
    assert months.append(database, 3, 2000, shift)[0] == 200201
    count, age, weeks, multiples, first, last = _facts(database, "year = 2001")
    s_count, s_age, s_weeks, s_multiples, s_first, s_last = _facts(database, "year = 2002")
    assert (count, s_count, s_first, s_last) == (24_000, 6_000, 200201, 200203)
    # Means move by the shift, within a few standard errors of 2000-row months.
    assert abs(s_age - age - 5) < 0.5 and abs(s_weeks - weeks + 2) < 0.3
    assert 3 < s_multiples / multiples < 5
    with pytest.raises(ValueError, match="never rewritten"):
        months.append(database, 1, 10, first_span=200112)


def test_months_are_deterministic_for_a_seed(tmp_path):
    one, two = tmp_path / "a.duckdb", tmp_path / "b.duckdb"
    for database in (one, two):
        months.append(database, months=2, rows_per_month=500, first_span=200501, seed=5)
    query = "SELECT * FROM natality ORDER BY ALL"
    with duckdb.connect(str(one)) as a, duckdb.connect(str(two)) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()


def test_the_command_refuses_an_empty_table_without_a_first_span(tmp_path, capsys):
    assert months.main(["--database", str(tmp_path / "new.duckdb")]) == 2
    assert "give --first-span" in capsys.readouterr().err


@pytest.mark.parametrize("first_span", ["201013", "201000", "7", "-200101"])
def test_a_first_span_that_is_no_month_is_refused_before_anything_is_written(
        tmp_path, capsys, first_span):
    database = tmp_path / "w.duckdb"
    months.append(database, 1, 10, first_span=200101)
    assert months.main(["--database", str(database), "--first-span", first_span]) == 2
    assert "must be a month written YYYYMM" in capsys.readouterr().err
    assert _facts(database, "TRUE")[0] == 10


def _floor_sums(database, where):
    """(rows, squared errors, coarse squared errors) of the query's rows, against the
    generator's conditional means computed here from each stored row's features."""
    from warehouse.natality_model import solve_model

    model = solve_model()
    with duckdb.connect(str(database), read_only=True) as con:
        frame = con.execute(
            "SELECT weight_pounds, is_male, plurality, mother_age, gestation_weeks FROM natality "
            "WHERE year > 2000 AND weight_pounds > 0 AND mother_age > 0 AND plurality > 0 "
            f"AND gestation_weeks > 0 AND {where}").df()
    week = np.searchsorted(model.weeks, frame.gestation_weeks.to_numpy(np.int64))
    plurality = np.searchsorted(model.pluralities, frame.plurality.to_numpy(np.int64))
    age = np.searchsorted(model.ages, frame.mother_age.to_numpy(np.int64))
    common = model.week_curve[week] * model.age_factor[age]
    mean = (common * model.plurality_factor[plurality, week]
            * model.sex_factor[frame.is_male.to_numpy(bool).astype(np.int64)])
    coarse = common * model.coarse_factor[(plurality > 0).astype(np.int64), week]
    weight = frame.weight_pounds.to_numpy(float)
    return len(frame), np.sum((weight - mean) ** 2), np.sum((weight - coarse) ** 2)


def test_appended_months_keep_the_generators_floors_true_of_the_whole_table(tmp_path):
    database = tmp_path / "w.duckdb"
    before = generator.generate(database, rows=20_000, seed=3)
    shift = months.Shift(older_mothers=6, multiples_factor=4, gestation_shift=-2)
    spans = months.append(database, 3, 3000, shift, seed=9)
    after = generator.read_report(database)
    count, _, _ = _floor_sums(database, f"year * 100 + month < {spans[0]}")
    added, errors, coarse = _floor_sums(database, f"year * 100 + month >= {spans[0]}")
    assert _facts(database, "TRUE")[0] == 20_000 + 9000
    assert (after.rows, after.appended_months, after.appended_rows) == (20_000, 3, 9000)
    assert (after.seed, after.created_with) == (before.seed, before.created_with)
    mse = (before.irreducible_rmse ** 2 * count + errors) / (count + added)
    mse_coarse = (before.irreducible_rmse_augmented ** 2 * count + coarse) / (count + added)
    assert after.irreducible_rmse == pytest.approx(np.sqrt(mse), rel=1e-9)
    assert after.irreducible_rmse_augmented == pytest.approx(np.sqrt(mse_coarse), rel=1e-9)
    assert after.irreducible_rmse_query == pytest.approx(np.sqrt((mse + mse_coarse) / 2),
                                                         rel=1e-9)
    with duckdb.connect(str(database), read_only=True) as con:
        (std,) = con.execute("SELECT stddev_samp(weight_pounds) FROM natality WHERE year > 2000 "
                             "AND weight_pounds > 0 AND gestation_weeks > 0").fetchone()
    assert after.weight_std == pytest.approx(std, rel=1e-9)
    assert after.irreducible_rmse_query != before.irreducible_rmse_query


def test_info_that_no_longer_describes_the_table_is_removed_not_extended(tmp_path):
    database = tmp_path / "w.duckdb"
    generator.generate(database, rows=2000, seed=3)
    with duckdb.connect(str(database)) as con:  # as months appended by an earlier version left it
        con.execute("INSERT INTO natality SELECT * REPLACE (2009 AS year) FROM natality LIMIT 50")
    months.append(database, 1, 100, first_span=201001)
    assert generator.read_report(database) is None  # so a run quotes no floor of other rows
    assert _facts(database, "TRUE")[0] == 2150
    new = tmp_path / "new.duckdb"
    months.append(new, 1, 100, first_span=200101)
    assert generator.read_report(new) is None  # months alone never claim a generator's info


def _weeks(database):
    with duckdb.connect(str(database), read_only=True) as con:
        return con.execute("SELECT AVG(gestation_weeks), AVG((gestation_weeks >= 45)::INT), "
                           "AVG((gestation_weeks = 17)::INT) FROM natality "
                           "WHERE gestation_weeks BETWEEN 17 AND 47").fetchone()


def test_a_gestation_shift_moves_the_weeks_and_piles_what_passes_an_end_onto_it(tmp_path):
    facts = {}
    for shift in (0, -3, 3, -30):
        database = tmp_path / f"{shift}.duckdb"
        months.append(database, 1, 5000, months.Shift(gestation_shift=shift), first_span=200101)
        facts[shift] = _weeks(database)
    mean, long, _ = facts[0]
    assert abs(facts[-3][0] - (mean - 3)) < 0.1 and abs(facts[3][0] - (mean + 3)) < 0.1
    assert facts[-3][1] < long < facts[3][1]  # shorter gestations: fewer very long ones
    assert facts[-30][0] == 17 and facts[-30][2] == 1  # every birth piled onto week 17


def test_moved_shares_keep_their_mass_and_split_a_fraction():
    pmf = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(months.moved(pmf, 0.5), [0.25, 0.375, 0.375])
    np.testing.assert_allclose(months.moved(pmf, -7), [1, 0, 0])
    np.testing.assert_allclose(months.moved(pmf, 1), [0, 0.5, 0.5])


@pytest.mark.parametrize("flag, value", [("--gestation-shift", "-31"),
                                         ("--gestation-shift", "100"), ("--older-mothers", "45")])
def test_a_shift_wider_than_the_generators_range_is_refused(tmp_path, capsys, flag, value):
    database = tmp_path / "w.duckdb"
    with pytest.raises(SystemExit) as exited:  # a usage error, as argparse's own
        months.main(["--database", str(database), "--first-span", "200101", flag, value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag} must be within ±" in err, err
    assert not database.exists()
