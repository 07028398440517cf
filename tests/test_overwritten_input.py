"""A command never writes its result over the file it reads: batch prediction's output (or its
errors file) naming its input, or the EDA report naming its warehouse, is a usage error (exit
2) and the input is left as it was (common/files.overwritten_input)."""
from __future__ import annotations

import json
import os
import pathlib

import pytest

from common.files import overwritten_input
from warehouse.preflight import read_files

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
                             sources=["exports/natality-*.parquet"], listing=read_files
                             ) == "exports/natality-*.parquet"
    assert overwritten_input("exports/other.parquet", sources=["exports/natality-*.parquet"],
                             listing=read_files) is None
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


@pytest.mark.parametrize("folder", ["data", "data [v2]"])  # '[v2]' is part of a name
def test_the_eda_report_refuses_to_replace_its_warehouse(
        folder: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture) -> None:
    from reports import eda

    (tmp_path / folder).mkdir()
    warehouse = tmp_path / folder / "natality.duckdb"
    warehouse.write_bytes(b"the warehouse")
    with pytest.raises(SystemExit) as exited:
        eda.main(["--database", str(warehouse), "--out", str(warehouse)])
    assert exited.value.code == 2 and "writing the report would replace it" in (
        capsys.readouterr().err)
    assert warehouse.read_bytes() == b"the warehouse"


def test_a_path_with_glob_characters_is_the_file_it_names(tmp_path: pathlib.Path) -> None:
    """'[v2]' is part of the directory's name: DuckDB reads the file, so does the check."""
    exports = tmp_path / "exports [v2]"
    exports.mkdir()
    (exports / "natality.csv").write_text("rows")
    (tmp_path / "exports v").mkdir()
    given = str(exports / "natality.csv")
    assert overwritten_input(given, sources=[given], listing=read_files) == given
    assert overwritten_input(given, given) == given  # --warehouse, --input: opened as named
    assert overwritten_input(tmp_path / "exports v" / "natality.csv", given,
                             sources=[given], listing=read_files) is None
    assert overwritten_input(exports / "other.csv", sources=[str(exports / "*.csv")],
                             listing=read_files) is None  # DuckDB matches nothing there


def test_batch_predict_refuses_to_replace_a_source_named_with_glob_characters(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from serving import batch_predict

    monkeypatch.chdir(tmp_path)
    (tmp_path / "exports [v2]").mkdir()
    source = tmp_path / "exports [v2]" / "natality.csv"
    source.write_text("is_male,mother_age\nTrue,26\n")
    with pytest.raises(SystemExit) as exited:
        batch_predict.main(["--source", "exports [v2]/natality.csv", "--output",
                            "exports [v2]/natality.csv", "--model-dir", str(tmp_path)])
    assert exited.value.code == 2
    assert "is what it reads (exports [v2]/natality.csv)" in capsys.readouterr().err
    assert source.read_text() == "is_male,mother_age\nTrue,26\n"
