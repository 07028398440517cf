"""Batch prediction's output file, assembled from part files in row order, whole or not at all;
two runs writing one output at once each assemble their own rows (serving/batch_output.py)."""
from __future__ import annotations

import pathlib
from typing import List

import apache_beam as beam

from serving import batch_output


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
