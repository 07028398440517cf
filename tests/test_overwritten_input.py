"""A command never writes its result over the file it reads: batch prediction's output (or its
errors file) naming its input, or the EDA report naming its warehouse, is a usage error (exit
2) and the input is left as it was (common/files.overwritten_input)."""
from __future__ import annotations

import json
import os
import pathlib

import pytest

from common.files import overwritten_input

ROW = {"is_male": "True", "mother_age": 26.0, "plurality": "Single(1)", "gestation_weeks": 39}


def test_the_same_file_by_any_spelling_or_a_glob_s_match_is_found(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports").mkdir()
    for name in ("natality-1.parquet", "natality-2.parquet"):
        (tmp_path / "exports" / name).write_text("rows")
    os.symlink(tmp_path / "exports", tmp_path / "linked")
    assert overwritten_input("exports/natality-1.parquet", None,
                             str(tmp_path / "exports" / "natality-1.parquet")) is not None
    assert overwritten_input(tmp_path / "linked" / "natality-2.parquet",
                             "exports/natality-*.parquet") == "exports/natality-*.parquet"
    assert overwritten_input("exports/other.parquet", "exports/natality-*.parquet") is None
    assert overwritten_input("predictions.jsonl", "", None, "exports/natality-1.parquet") is None
    assert overwritten_input("gs://b/rows.jsonl", "gs://b/rows.jsonl") == "gs://b/rows.jsonl"
    assert overwritten_input("gs://b/out.jsonl", "gs://b/rows.jsonl") is None


@pytest.mark.parametrize("output", ["rows.jsonl", "rows"])  # rows + .errors.jsonl: the input too
def test_batch_predict_refuses_an_output_that_would_replace_its_input(
        output: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from serving import batch_predict

    monkeypatch.chdir(tmp_path)
    name = "rows.jsonl" if output == "rows.jsonl" else "rows.errors.jsonl"
    rows = tmp_path / name
    rows.write_text(json.dumps(ROW) + "\n")
    with pytest.raises(SystemExit) as exited:
        batch_predict.main(["--input", name, "--output", output, "--model-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert f"is what it reads ({name}): writing it would replace the input" in (
        capsys.readouterr().err)
    assert rows.read_text() == json.dumps(ROW) + "\n"


def test_the_eda_report_refuses_to_replace_its_warehouse(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    from reports import eda

    warehouse = tmp_path / "natality.duckdb"
    warehouse.write_bytes(b"the warehouse")
    with pytest.raises(SystemExit) as exited:
        eda.main(["--database", str(warehouse), "--out", str(warehouse)])
    assert exited.value.code == 2 and "writing the report would replace it" in (
        capsys.readouterr().err)
    assert warehouse.read_bytes() == b"the warehouse"
