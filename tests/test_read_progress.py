"""Progress lines of the steps that read the examples: bounded in number, counted against the
split's total, and in a real run's log (through the runner's log filter)."""
from __future__ import annotations

import json
import logging
import re

import apache_beam as beam
import pytest
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.tfxio import tf_example_record

from pipelines import read_progress
from pipelines.speedups import batched_reads
from tests.test_batched_reads import SCHEMA, write_examples

LINE = re.compile(r"(\w+) split (\w+): (\d+) of (\d+) records read \((\d+)%\)")


def test_a_split_gets_a_line_per_tenth_whatever_its_batches():
    for total, batch in ((3200, 7), (3200, 4096), (10, 1), (1_000_003, 4096)):
        lines, count = [], 0
        while count < total:
            before, count = count, min(total, count + batch)
            line = read_progress.progress_line(before, count, total)
            if line is not None:
                lines.append(line)
        assert 1 <= len(lines) <= read_progress.LINES_PER_SPLIT
        assert lines[-1] == f"{total} of {total} records read (100%)"


def test_without_a_total_a_line_every_million_records():
    every = read_progress.UNKNOWN_TOTAL_EVERY
    assert read_progress.progress_line(0, every - 1, None) is None
    assert read_progress.progress_line(every - 1, every, None) == f"{every} records read"
    # Past a recorded total, the total is not believed.
    assert read_progress.progress_line(10, 2 * every, 10) == f"{2 * every} records read"


def test_the_batched_reader_counts_a_split_against_its_recorded_rows(tmp_path, caplog):
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    split = tmp_path / "examples" / "Split-train"
    split.mkdir(parents=True)
    write_examples(split / "data_tfrecord-00000-of-00002.gz", 2500, seed=1)
    write_examples(split / "data_tfrecord-00001-of-00002.gz", 700, seed=2)
    examples.set_string_custom_property(read_progress.SPLIT_ROWS_PROPERTY,
                                        json.dumps({"train": 3200}))
    stock = tf_example_record.TFExampleRecord(str(split / "*"), schema=SCHEMA,
                                              telemetry_descriptors=["StatisticsGen"])
    with caplog.at_level(logging.INFO, logger="babyweight.reads"):
        with read_progress.known_split_rows([examples]), beam.Pipeline() as pipeline:
            _ = pipeline | batched_reads.batched(stock).BeamSource(500)
    lines = [LINE.match(r.getMessage()) for r in caplog.records if r.name == "babyweight.reads"]
    assert all(lines) and 1 <= len(lines) <= read_progress.LINES_PER_SPLIT, caplog.text
    counts = [int(line.group(3)) for line in lines]
    assert counts == sorted(counts) and counts[-1] == 3200, caplog.text
    assert {line.group(1, 2, 4) for line in lines} == {("StatisticsGen", "train", "3200")}


@pytest.mark.slow
def test_a_run_s_log_shows_how_far_statistics_gen_and_the_evaluator_have_read(pipeline_runs):
    log = pipeline_runs.log(0)
    finished = {}
    for step, split, count, total, _ in LINE.findall(log):
        assert int(count) <= int(total)
        finished[(step, split)] = max(finished.get((step, split), 0), int(count))
    assert len(LINE.findall(log)) <= read_progress.LINES_PER_SPLIT * len(finished), log
    # ExampleGen's own count of each split is the total read against.
    written = {split: int(rows) for split, rows in
               re.findall(r"ExampleGen split (\w+): (\d+) examples in", log)}
    assert written and all(finished[("StatisticsGen", s)] == n for s, n in written.items()), log
    assert finished[("Evaluator", "eval")] == written["eval"], log
