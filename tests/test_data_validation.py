"""Bad data stops the run before training, exits 2, and says what is wrong in plain words."""
import pathlib
import shutil

import duckdb
import pytest

from tests import pipeline_helpers

pytestmark = pytest.mark.slow


run_pipeline = pipeline_helpers.run_local_pipeline


def anomalies_report(tmp_path: pathlib.Path) -> str:
    (report,) = (tmp_path / "reports").glob("*/anomalies.txt")
    return report.read_text()


def export_csv(database: pathlib.Path, select: str, out: pathlib.Path) -> pathlib.Path:
    connection = duckdb.connect(str(database), read_only=True)
    connection.execute(f"COPY ({select}) TO '{out}' (HEADER, DELIMITER ',')")
    connection.close()
    return out


def test_new_plurality_value_is_caught(small_warehouse, tmp_path, capsys):
    database = tmp_path / "natality.duckdb"
    shutil.copy(small_warehouse, database)
    connection = duckdb.connect(str(database))
    connection.execute("UPDATE natality SET plurality = 6 WHERE plurality = 2 AND month <= 6")
    connection.close()
    assert run_pipeline(tmp_path, "--database", str(database)) == 2
    report = anomalies_report(tmp_path)
    assert "feature 'plurality'" in report and "6" in report
    logged = capsys.readouterr().err
    assert "feature 'plurality'" in logged and "stopped before training" in logged
    assert not list((tmp_path / "root").glob("Trainer*")), "nothing downstream may run"


def test_type_change_is_caught(small_warehouse, tmp_path, capsys):
    export = export_csv(
        small_warehouse,
        "SELECT * REPLACE (mother_age + 0.5 AS mother_age) FROM natality",
        tmp_path / "natality.csv")
    assert run_pipeline(tmp_path, "--source", str(export)) == 2
    logged = capsys.readouterr().err
    assert "column 'mother_age'" in logged and "not whole numbers" in logged


def test_missing_column_is_caught(small_warehouse, tmp_path, capsys):
    export = export_csv(small_warehouse, "SELECT * EXCLUDE (gestation_weeks) FROM natality",
                        tmp_path / "natality.csv")
    assert run_pipeline(tmp_path, "--source", str(export)) == 2
    logged = capsys.readouterr().err
    assert "missing column gestation_weeks" in logged and "Nothing ran" in logged
