"""--generate-rows and --seed given for a warehouse they cannot describe are refused (exit 2,
before any component runs, the file left as it was), never silently ignored."""
import pathlib

import duckdb
import pytest

import local_runner
from common.config import WarehouseConfig
from tests.pipeline_helpers import run_local_runner_refusing
from warehouse import generator

ROWS, SEED = 2000, 3


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("generated") / "natality.duckdb"
    generator.generate(path, rows=ROWS, seed=SEED)
    return path


def _refusal(tmp_path, capsys, *args) -> str:
    assert run_local_runner_refusing(tmp_path, *args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("local_runner.py: error: "), err
    return err


@pytest.mark.parametrize("flags, asked", [
    (("--generate-rows", "5000"), f"5,000 rows with seed {SEED}"),
    (("--seed", "4"), f"{ROWS:,} rows with seed 4"),
    (("--generate-rows", "5000", "--seed", "4"), "5,000 rows with seed 4"),
])
def test_flags_other_than_the_file_s_generation_are_refused(generated, tmp_path, capsys, flags,
                                                             asked):
    before = generated.stat().st_mtime_ns
    err = _refusal(tmp_path, capsys, "--database", str(generated), *flags)
    assert f"{generated} holds {ROWS:,} rows generated with seed {SEED}" in err, err
    assert f"not the {asked} asked for" in err, err
    assert "--overwrite" in err and "delete the file" in err, err
    assert generated.stat().st_mtime_ns == before, "the existing warehouse was touched"
    assert generator.read_report(generated).rows == ROWS


def test_flags_matching_the_file_s_generation_are_accepted(generated):
    for rows, seed in ((ROWS, SEED), (ROWS, None), (None, SEED), (None, None)):
        given = WarehouseConfig(database=generated, generate_rows=rows, seed=seed)
        assert local_runner.warehouse_problem(given) is None, (rows, seed)


def test_a_warehouse_the_generator_did_not_make_takes_no_generation_flags(tmp_path, capsys):
    own = tmp_path / "own.duckdb"
    with duckdb.connect(str(own)) as con:
        con.execute("CREATE TABLE natality (weight_pounds DOUBLE)")
    err = _refusal(tmp_path, capsys, "--database", str(own), "--seed", "5")
    assert f"--seed do not apply to {own}: it was not made by the generator" in err, err


def test_a_source_takes_no_generation_flags(tmp_path, capsys):
    err = _refusal(tmp_path, capsys, "--source", str(tmp_path / "export.parquet"),
                   "--generate-rows", "10")
    assert "--generate-rows do not apply with --source" in err, err


def test_a_missing_file_is_generated_with_the_flags_or_the_defaults(tmp_path):
    path = tmp_path / "new.duckdb"
    local_runner.ensure_warehouse(WarehouseConfig(database=path, generate_rows=1500, seed=9))
    report = generator.read_report(path)
    assert (report.rows, report.seed) == (1500, 9)
    assert local_runner.generation(WarehouseConfig()) == (generator.DEFAULT_ROWS,
                                                           generator.DEFAULT_SEED)
    parsed = local_runner.parse_args([])
    assert (parsed.generate_rows, parsed.seed) == (None, None)


@pytest.fixture(scope="module")
def appended(generated, tmp_path_factory) -> pathlib.Path:
    """The generated file with two months appended by warehouse.months."""
    import shutil

    from warehouse import months

    path = tmp_path_factory.mktemp("appended") / "natality.duckdb"
    shutil.copyfile(generated, path)
    months.append(path, 2, 300, months.Shift(older_mothers=3))
    return path


def test_appended_months_are_not_taken_for_generated_rows(appended, tmp_path, capsys):
    report = generator.read_report(appended)
    assert (report.rows, report.seed, report.appended_months, report.appended_rows) == (
        ROWS, SEED, 2, 600)
    # The flags the file was generated with (or none) hold: the months are the documented way
    # to add data to it, and the run's log says they are there.
    for rows, seed in ((ROWS, SEED), (ROWS, None), (None, SEED), (None, None)):
        given = WarehouseConfig(database=appended, generate_rows=rows, seed=seed)
        assert local_runner.warehouse_problem(given) is None, (rows, seed)
    # The table's total is no row count the generator made it with.
    err = _refusal(tmp_path, capsys, "--database", str(appended), "--generate-rows",
                   str(ROWS + 600))
    assert (f"{appended} holds {ROWS:,} rows generated with seed {SEED} and 2 months (600 rows) "
            f"appended by warehouse.months, not the {ROWS + 600:,} rows with seed {SEED} asked "
            "for") in err, err


def test_the_run_logs_the_appended_months(appended, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="babyweight.local_runner"):
        assert local_runner.usable_rows(WarehouseConfig(database=appended)) == ROWS + 600
    assert (f"Data: {appended}, {ROWS + 600} rows ({ROWS:,} rows generated with seed {SEED} and "
            "2 months (600 rows) appended by warehouse.months)") in caplog.text, caplog.text
