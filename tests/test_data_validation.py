"""Bad data stops the run before training, exits 2, and says what is wrong in plain words."""
import pathlib

import duckdb
import pytest

from reports import mlmd
from tests import pipeline_helpers

pytestmark = pytest.mark.slow


run_pipeline = pipeline_helpers.run_local_pipeline


def export_csv(database: pathlib.Path, select: str, out: pathlib.Path) -> pathlib.Path:
    connection = duckdb.connect(str(database), read_only=True)
    connection.execute(f"COPY ({select}) TO '{out}' (HEADER, DELIMITER ',')")
    connection.close()
    return out


def test_new_plurality_value_is_caught(pipeline_runs):
    """The shared runs' third (tests/pipeline_run_fixtures.py): a copy of the warehouse where
    some twins have plurality 6."""
    assert pipeline_runs.exit_codes[2] == 2
    stopped = sorted(pipeline_runs.reports_dir.glob("2*"))[-1]
    report = (stopped / "anomalies.txt").read_text()
    assert "feature 'plurality'" in report and "6" in report
    logged = pipeline_runs.log(2)
    assert "feature 'plurality'" in logged and "stopped before training" in logged
    (record, *_) = mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))  # newest first
    assert record.components and "Trainer" not in {c.node_id for c in record.components}, (
        "nothing downstream may run")


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
