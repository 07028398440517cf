"""Appended months: after the newest month, never over one, deterministic for a seed, and
shifted as asked while a baby's weight still follows the generator's model."""
from __future__ import annotations

import duckdb
import pytest

from warehouse import months

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

