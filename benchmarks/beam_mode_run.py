"""One Beam component of the local pipeline, run once in this process, with its CPU accounted.

The child of `benchmarks/beam_modes.py`: `prepare` writes the warehouse and ExampleGen's shards
for a size; `run` runs StatisticsGen's or Transform's executor (the local pipeline's, reading in
batches, with the run's speed-ups on) on them in one Beam mode and prints one JSON line: wall
seconds, the CPU seconds of this process (Beam's runner; in in_memory also its only worker;
less the sampler thread's, whose memory readings cost CPU) and of each worker process it
started, the CPU seconds of the busiest thread of them all, and the peak memory of the whole
process tree (each shared page once, as benchmarks/rss_probe.py counts it and says why, and why
it is read less often). Worker processes and threads are sampled every
SAMPLE_SECONDS, so each one's last fraction of a sample before it exits is not counted.

Why the busiest thread: no run can take less wall time than its busiest thread's CPU seconds
(Beam's thread running the component's Python, in in_memory), whatever the machine's load, so
CPU over that thread's CPU is the most cores the run could keep busy on an idle machine; CPU
over wall seconds is what it did keep busy, which on a loaded machine is its share.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import threading
import time
from typing import Any, Dict, List, Tuple

import psutil

from benchmarks.rss_probe import PacedMemory

SAMPLE_SECONDS = 0.1
SPLITS = ("train", "eval", "test")


def prepare(rows: int, work: pathlib.Path) -> Dict[str, Any]:
    """The synthetic warehouse of `rows` raw rows and ExampleGen's output for it, in `work`."""
    from google.protobuf import json_format
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
    from tfx.types import standard_artifacts

    from pipelines import pipeline
    from pipelines.components.duckdb_example_gen import executor
    from pipelines.components.duckdb_example_gen.component import DuckDBExampleGen
    from pipelines.config import DataConfig
    from warehouse import generator

    database = work / "natality.duckdb"
    generator.generate(database, rows=rows, seed=3)
    component = DuckDBExampleGen(pipeline.input_config(DataConfig()), database=database)
    properties = {key: (json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR")
                        else value) for key, value in component.exec_properties.items()}
    examples = standard_artifacts.Examples()
    examples.uri = str(work / "examples")
    examples.split_names = json.dumps(list(SPLITS))
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(work / "tmp"))
    executor.Executor(context).Do({}, {"examples": [examples]}, properties)
    return {"rows": rows, "files": len(list((work / "examples").glob("Split-*/*")))}


class TreeSampler:
    """Samples the CPU seconds of each process under this one, and the tree's memory."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self.worker_cpu: Dict[int, float] = {}
        self.thread_cpu: Dict[Tuple[int, int], float] = {}  # since the sampler started
        self._thread_start: Dict[Tuple[int, int], float] = {}
        self.peak_memory = 0
        self.own_cpu = 0.0  # the sampler thread's: not the run's
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def _threads(self, process: psutil.Process, first: bool) -> None:
        for thread in process.threads():
            key, used = (process.pid, thread.id), thread.user_time + thread.system_time
            if first:  # what the thread had used before (the imports): not the run's
                self._thread_start[key] = used
            self.thread_cpu[key] = used - self._thread_start.get(key, 0.0)

    def _run(self) -> None:
        paced, started = PacedMemory(SAMPLE_SECONDS), time.thread_time()
        while not self._done.is_set():
            self._threads(self._me, False)
            children = self._me.children(recursive=True)
            for child in children:
                try:
                    times = child.cpu_times()
                    self._threads(child, False)
                except psutil.NoSuchProcess:
                    continue
                self.worker_cpu[child.pid] = times.user + times.system
            memory = paced.read([self._me, *children])
            if memory is not None:
                self.peak_memory = max(self.peak_memory, memory)
            self.own_cpu = time.thread_time() - started
            self._done.wait(SAMPLE_SECONDS)

    def __enter__(self) -> "TreeSampler":
        self._threads(self._me, True)  # the baseline, before the caller's work starts
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()
        self._thread.join()
        self._threads(self._me, False)  # this process's threads up to the end


def _executor_inputs(component: str, work: pathlib.Path, out: pathlib.Path) -> Any:
    """(executor class, input dict, output dict, exec properties) as the local pipeline's."""
    from google.protobuf import json_format
    from tfx.proto import transform_pb2
    from tfx.types import Channel, artifact_utils, standard_artifacts

    from pipelines.schema import SCHEMA_FILE
    from pipelines.speedups import batched_reads

    examples = standard_artifacts.Examples()
    examples.uri = str(work / "examples")
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    if component == "StatisticsGen":
        statistics = standard_artifacts.ExampleStatistics()
        statistics.uri = str(out / "statistics")
        return (batched_reads.StatisticsGenExecutor, {"examples": [examples]},
                {"statistics": [statistics]}, {"exclude_splits": "[]"})
    schema_dir = out / "schema"
    schema_dir.mkdir(parents=True)
    shutil.copy(SCHEMA_FILE, schema_dir / "schema.pbtxt")
    schema = standard_artifacts.Schema()
    schema.uri = str(schema_dir)
    graph = standard_artifacts.TransformGraph()
    graph.uri = str(out / "transform_graph")
    from pipelines.pipeline import PREPROCESSING_FN

    # The local pipeline's Transform settings (pipelines/pipeline.py, transform_component).
    spec = batched_reads.Transform(
        examples=Channel(type=standard_artifacts.Examples),
        schema=Channel(type=standard_artifacts.Schema), preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"]), materialize=False,
        disable_statistics=True, disable_analyzer_cache=True)
    properties = {key: (json_format.MessageToJson(value) if hasattr(value, "DESCRIPTOR")
                        else value) for key, value in spec.exec_properties.items()}
    return (batched_reads.TransformExecutor, {"examples": [examples], "schema": [schema]},
            {"transform_graph": [graph]}, properties)


def run(component: str, beam_args: List[str], work: pathlib.Path) -> Dict[str, Any]:
    """Runs `component`'s executor over `work`'s examples with `beam_args`; its costs."""
    from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

    from pipelines import speedups

    out = work / f"out-{os.getpid()}"
    executor_class, inputs, outputs, properties = _executor_inputs(component, work, out)
    context = BaseBeamExecutor.Context(beam_pipeline_args=list(beam_args),
                                       tmp_dir=str(out / "tmp"))
    me = psutil.Process()
    load_before = os.getloadavg()[0]
    with speedups.enabled(beam_args), TreeSampler() as sampler:
        started, cpu = time.monotonic(), me.cpu_times()
        executor_class(context).Do(inputs, outputs, properties)
        seconds, after = time.monotonic() - started, me.cpu_times()
    shutil.rmtree(out, ignore_errors=True)
    workers = sorted((v for v in sampler.worker_cpu.values() if v > 0), reverse=True)
    return {"seconds": seconds,
            "runner_cpu_seconds": (after.user + after.system) - (cpu.user + cpu.system)
            - sampler.own_cpu,
            "worker_cpu_seconds": workers,
            "busiest_thread_cpu_seconds": max(sampler.thread_cpu.values(), default=0.0),
            "peak_memory_mb": sampler.peak_memory / 2**20,
            "load_1min": [load_before, os.getloadavg()[0]]}


def main(argv: List[str]) -> int:
    """`prepare ROWS WORK` or `run COMPONENT WORK [BEAM_ARG ...]`; prints one JSON line."""
    if len(argv) >= 3 and argv[0] == "prepare":
        result = prepare(int(argv[1]), pathlib.Path(argv[2]))
    elif len(argv) >= 3 and argv[0] == "run" and argv[1] in ("StatisticsGen", "Transform"):
        result = run(argv[1], argv[3:], pathlib.Path(argv[2]))
    else:
        print("usage: beam_mode_run.py prepare ROWS WORK | run StatisticsGen|Transform WORK "
              "[BEAM_ARG ...]", file=sys.stderr)
        return 2
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
