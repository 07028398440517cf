"""Batch prediction's output file, assembled from part files in row order, whole or not at all;
two runs writing one output at once each assemble their own rows, and a local output is held
by one run at a time (serving/batch_output.py)."""
from __future__ import annotations

import json
import os
import pathlib
import re
from typing import List

import apache_beam as beam
import pytest

from serving import batch_output, batch_predict
from tests.serving_fixtures import COURSE_PAYLOAD, ServingModels

pytest_plugins = ("tests.serving_fixtures",)


def _write(output: str, run: str, lines: List[str]) -> None:
    """Run `run`'s pipeline: the lines, shuffled, as (row index, line) part files."""
    with beam.Pipeline() as pipeline:
        _ = (pipeline
             | beam.Create(list(enumerate(lines)))
             | beam.Reshuffle()
             | batch_output.WriteInOrder(output, run))


def test_two_runs_writing_one_output_at_once_each_assemble_their_own_rows(
        tmp_path: pathlib.Path) -> None:
    output = str(tmp_path / "predictions.jsonl")
    rows = batch_output.BLOCK_ROWS + 5  # two blocks each, so the parts' names are the same
    first = [f'{{"run": "a", "row": {n}}}' for n in range(rows)]
    second = [f'{{"run": "b", "row": {n}}}' for n in range(rows)]
    a, b = batch_output.new_run_id(), batch_output.new_run_id()
    _write(output, a, first)  # both runs' parts exist before either assembles
    _write(output, b, second)
    assert batch_output.assemble(output, a) == rows
    assert pathlib.Path(output).read_text().splitlines() == first
    assert batch_output.assemble(output, b) == rows
    assert pathlib.Path(output).read_text().splitlines() == second
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.jsonl"]


def test_a_failed_run_s_parts_are_removed_and_others_kept(tmp_path: pathlib.Path) -> None:
    output = str(tmp_path / "predictions.csv")
    a, b = batch_output.new_run_id(), batch_output.new_run_id()
    _write(output, a, ["x"])
    _write(output, b, ["y"])
    batch_output.remove_parts(output, a)
    assert not pathlib.Path(batch_output.parts_dir(output, a)).exists()
    assert batch_output.assemble(output, b, header="h") == 1
    assert pathlib.Path(output).read_text() == "h\ny\n"


def test_a_local_output_is_held_by_one_run_and_a_killed_run_s_leftovers_are_removed(
        tmp_path: pathlib.Path) -> None:
    output = str(tmp_path / "out" / "predictions.jsonl")
    errors = output + ".errors.jsonl"
    killed = batch_output.new_run_id()
    _write(output, killed, ["x"])
    _write(errors, killed, ["e"])
    staging = pathlib.Path(f"{output}{batch_output.INCOMPLETE_SUFFIX}-{killed}")
    staging.write_text("half")
    other = str(tmp_path / "out" / "predictions.jsonl2")  # another output: not this one's
    _write(other, killed, ["y"])
    with batch_output.exclusive(output, errors):
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            ".predictions.jsonl.lock", pathlib.Path(batch_output.parts_dir(other, killed)).name]
        with pytest.raises(batch_output.OutputBusy,
                           match=rf"another batch prediction \(pid {os.getpid()}, started "
                                 rf".*\) is writing {re.escape(output)}; wait"):
            with batch_output.exclusive(output):
                pass
        with batch_output.exclusive(other):  # another output is not held
            pass
    with batch_output.exclusive(output):  # released with the run
        pass


def test_batch_predict_refuses_an_output_another_run_is_writing(
        stand_in_models: ServingModels, tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(COURSE_PAYLOAD["instances"][0]) + "\n")
    output = tmp_path / "predictions.jsonl"
    argv = ["--model-dir", str(model_dir), "--input", str(rows), "--output", str(output)]
    with batch_output.exclusive(str(output)):
        assert batch_predict.main(argv) == 1
        assert f"is writing {output}" in capsys.readouterr().err
        assert not output.exists()
    assert batch_predict.main(argv) == 0
    assert len(output.read_text().splitlines()) == 1


def test_assembling_over_a_directory_fails_and_leaves_it_as_it_was(
        tmp_path: pathlib.Path) -> None:
    output = tmp_path / "predictions.jsonl"
    (output / "kept").mkdir(parents=True)
    (output / "kept" / "model.pb").write_text("weights")
    run = batch_output.new_run_id()
    _write(str(output), run, ["x"])
    with pytest.raises(IsADirectoryError, match="is a directory, not a file"):
        batch_output.assemble(str(output), run)
    assert (output / "kept" / "model.pb").read_text() == "weights"
    assert not pathlib.Path(f"{output}{batch_output.INCOMPLETE_SUFFIX}-{run}").exists()


@pytest.mark.parametrize("named", ["output", "errors", "slash"])
def test_batch_predict_refuses_an_output_that_is_a_directory_before_it_runs(
        stand_in_models: ServingModels, tmp_path: pathlib.Path,
        capsys: pytest.CaptureFixture, named: str) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    rows = work / "rows.jsonl"
    rows.write_text(json.dumps(COURSE_PAYLOAD["instances"][0]) + "\n")
    (work / "notes.txt").write_text("mine")
    output = {"output": str(work), "errors": str(tmp_path / "p.jsonl"),
              "slash": str(tmp_path / "new") + "/"}[named]
    if named == "errors":
        (tmp_path / "p.jsonl.errors.jsonl").mkdir()
    code = batch_predict.main(["--model-dir", str(model_dir), "--input", str(rows),
                               "--output", output])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: --output {output} ") and "directory" in err
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "rows.jsonl"]
    assert (model_dir.exists() and not (tmp_path / "p.jsonl").exists()
            and not (tmp_path / "new").exists())


def test_an_output_in_a_directory_named_with_glob_characters_gets_its_rows(
        tmp_path: pathlib.Path) -> None:
    """'[v2]' is part of the directory's name, not a pattern that matches no part file."""
    output = str(tmp_path / "exports [v2]" / "predictions.csv")
    run = batch_output.new_run_id()
    lines = [f"row {n}" for n in range(batch_output.BLOCK_ROWS + 3)]
    _write(output, run, lines)
    assert batch_output.read_parts(output, run) == lines
    assert batch_output.assemble(output, run, header="h") == len(lines)
    assert pathlib.Path(output).read_text().splitlines() == ["h"] + lines
    assert sorted(p.name for p in (tmp_path / "exports [v2]").iterdir()) == ["predictions.csv"]


def test_an_object_store_output_s_parts_are_matched_literally(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from apache_beam.io.filesystem import FileMetadata
    from apache_beam.io.gcp import gcsfilesystem

    directory = batch_output.parts_dir("gs://b/exports [v2]/predictions.csv", "0123456789ab")
    stored = [f"{directory}/000000000001", f"{directory}/000000000000",
              f"{directory}x/000000000000", f"{directory}/deeper/000000000000",
              directory.replace("[v2]", "v") + "/000000000000"]
    listed: List[str] = []

    def listing(_: object, prefix: str) -> object:
        listed.append(prefix)
        return (FileMetadata(path, 1) for path in stored if path.startswith(prefix))

    def delete_batch(paths: List[str]) -> List[object]:
        deleted.extend(paths)
        return [(path, None) for path in paths]

    deleted: List[str] = []
    monkeypatch.setattr(gcsfilesystem.GCSFileSystem, "_list", listing)
    monkeypatch.setattr(gcsfilesystem.GCSFileSystem, "_gcsIO",
                        lambda _: type("GcsIO", (), {"delete_batch": staticmethod(delete_batch)}))
    assert batch_output._parts(directory) == sorted(stored[:2])
    assert listed == ["gs://b/exports "]  # the prefix before the first escaped character
    batch_output._delete(stored[:2])
    assert deleted == stored[:2]


def test_batch_predict_writes_an_output_in_a_directory_named_with_glob_characters(
        stand_in_models: ServingModels, tmp_path: pathlib.Path) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path)
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps(COURSE_PAYLOAD["instances"][0]) + "\n")
    output = tmp_path / "exports [v2]" / "predictions.jsonl"
    output.parent.mkdir()
    output.write_text("the last run's predictions\n")
    assert batch_predict.main(["--model-dir", str(model_dir), "--input", str(rows),
                               "--output", str(output)]) == 0
    assert len(output.read_text().splitlines()) == 1
    assert "the last run's" not in output.read_text()
