"""multi_processing workers forked from a copy of the runner (pipelines/speedups/forked_workers.py).

In effect: in a process that starts as the local runner does (libraries imported, one thread),
a multi_processing pipeline run inside `speedups.enabled(args)` has its workers forked by the
zygote, a child of the runner, not started by the shell as new interpreters; and the
statistics those workers compute from the batched reads equal in_memory's. Off: with threads
running, for another Beam release and for in_memory arguments, Beam's own Popen starts them.
"""
from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys
import threading

import pytest

from pipelines.speedups import forked_workers, version_check
from tests.split_files import write_train_split

ROOT = pathlib.Path(__file__).resolve().parent.parent
MULTI_PROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

# Run in a fresh interpreter: the test process has threads and TensorFlow's runtime running.
SCRIPT = r"""
import json, os, sys
import apache_beam as beam
import psutil
import tensorflow_data_validation as tfdv
from apache_beam.options.pipeline_options import PipelineOptions
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.tfxio import tf_example_record

from pipelines import speedups
from pipelines.schema import SCHEMA_FILE
from pipelines.speedups import batched_reads

pattern, out, args = sys.argv[1], sys.argv[2], sys.argv[3:]
schema = text_format.Parse(SCHEMA_FILE.read_text(), schema_pb2.Schema())
tfxio = batched_reads.batched(tf_example_record.TFExampleRecord(pattern, schema=schema))


def parents(batch):
    return f"{os.getppid()} {os.getpid()}", batch.num_rows


def run(flags, name):
    with beam.Pipeline(options=PipelineOptions(flags)) as pipeline:
        raw = pipeline | tfxio.BeamSource()
        _ = (raw | tfdv.GenerateStatistics(tfdv.StatsOptions(schema=schema))
             | beam.Map(lambda s: s.SerializeToString().hex())
             | "Stats" >> beam.io.WriteToText(f"{out}/{name}-stats", shard_name_template=""))
        _ = (raw | beam.Map(parents) | beam.CombinePerKey(sum) | beam.Map(json.dumps)
             | "Rows" >> beam.io.WriteToText(f"{out}/{name}-rows", shard_name_template=""))


with speedups.enabled(args):
    zygotes = [child.pid for child in psutil.Process().children()]
    run(args, "parallel")
run([], "in_memory")
print("RESULT " + json.dumps({"runner": os.getpid(), "zygotes": zygotes}))
"""


def _statistics(path: pathlib.Path):
    from tensorflow_metadata.proto.v0 import statistics_pb2

    (dataset,) = statistics_pb2.DatasetFeatureStatisticsList.FromString(
        bytes.fromhex(path.read_text().strip())).datasets
    return dataset


@pytest.mark.slow  # a fresh interpreter importing TFX's libraries, and two worker processes
def test_workers_are_forked_by_the_zygote_and_compute_in_memory_s_statistics(
        tmp_path: pathlib.Path) -> None:
    pattern = write_train_split(tmp_path, rows=20_000, seed=11)
    done = subprocess.run([sys.executable, "-c", SCRIPT, pattern,
                           str(tmp_path), *MULTI_PROCESSING], cwd=ROOT, capture_output=True,
                          text=True, check=False)
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and results, done.stderr[-3000:]
    result = json.loads(results[0][len("RESULT "):])
    assert len(result["zygotes"]) == 1  # one copy of the runner, forked on entry
    rows = dict(json.loads(line)
                for line in (tmp_path / "parallel-rows").read_text().splitlines())
    parallel, in_memory = (_statistics(tmp_path / f"{name}-stats")
                           for name in ("parallel", "in_memory"))
    assert parallel.num_examples == in_memory.num_examples == sum(rows.values()) > 0
    # Every row was decoded by one of two workers whose parent is the zygote.
    workers = [tuple(map(int, key.split())) for key in rows]
    assert {parent for parent, _ in workers} == set(result["zygotes"])
    assert len({pid for _, pid in workers}) == 2
    assert result["runner"] not in {pid for _, pid in workers}
    ours = {f.path.step[0]: f for f in parallel.features}
    theirs = {f.path.step[0]: f for f in in_memory.features}
    assert ours.keys() == theirs.keys()
    for name, feature in theirs.items():
        if feature.HasField("num_stats"):
            other = ours[name].num_stats
            assert other.common_stats.num_non_missing == (
                feature.num_stats.common_stats.num_non_missing)
            assert (other.min, other.max) == (feature.num_stats.min, feature.num_stats.max)
            assert other.mean == pytest.approx(feature.num_stats.mean, rel=1e-9)


def test_with_a_thread_running_the_workers_start_as_new_processes(caplog) -> None:
    from apache_beam.runners.portability import local_job_service

    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="babyweight.speedups"):
            with forked_workers.forked(MULTI_PROCESSING):
                assert local_job_service.subprocess is subprocess
    finally:
        release.set()
        thread.join()
    assert any("start as new processes" in r.getMessage() and "threads are running"
               in r.getMessage() for r in caplog.records)


def test_in_memory_arguments_and_another_beam_release_leave_beam_s_popen(monkeypatch) -> None:
    from apache_beam.runners.portability import local_job_service

    assert not forked_workers.uses_worker_processes([])
    assert not forked_workers.uses_worker_processes(
        ["--direct_running_mode=multi_threading", "--direct_num_workers=2"])
    assert not forked_workers.uses_worker_processes(
        [*MULTI_PROCESSING, "--runner=DataflowRunner"])
    assert forked_workers.uses_worker_processes(MULTI_PROCESSING)
    with forked_workers.forked([]):
        assert local_job_service.subprocess is subprocess
    monkeypatch.setitem(version_check.RANGES, "forked_workers", ("apache-beam", (1, 0), (1, 1)))
    version_check.forget()
    try:
        monkeypatch.setattr(forked_workers, "why_not_fork", lambda: None)
        with forked_workers.forked(MULTI_PROCESSING):
            assert local_job_service.subprocess is subprocess
    finally:
        version_check.forget()


def test_the_worker_command_is_the_one_beam_gives_its_workers() -> None:
    """The zygote serves exactly the command Beam's DirectRunner builds for a worker."""
    import inspect

    from apache_beam.runners.portability.fn_api_runner import fn_runner

    source = inspect.getsource(fn_runner.FnApiRunner.run_pipeline)
    assert "'%s -m apache_beam.runners.worker.sdk_worker_main'" in source
    assert forked_workers.worker_command() == (
        "%s -m apache_beam.runners.worker.sdk_worker_main" % sys.executable)
