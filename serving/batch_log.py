"""Batch prediction's request log (--request-log-dir): readable only once the run succeeded.

Why: the log is written as a side effect of each Beam bundle. Under the log's complete names,
a run killed midway would leave rows that its rerun logs again, and monitoring would count
them twice; so would a bundle that failed and was retried (Beam's BundleBasedDirectRunner
retries a bundle up to four times). So each bundle attempt completes its files under a staged
name (serving/request_log.py's `staging` tag: the run's id, then the attempt's), the attempts
whose output Beam kept come out of the pipeline as a side output (a failed attempt's outputs
are discarded with it), and once the predictions file is assembled `publish` gives exactly
those attempts' files their complete names (all under the directory's publish lock,
serving/log_lock.py, so monitoring reads all of them or none) and deletes the rest. One batch
prediction at a time holds a log directory (`held`); holding it, a run removes what killed runs
staged there.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import sys
import uuid
from typing import Any, Dict, Iterable, Iterator, Optional, Tuple

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from serving import batch_output, request_log

METRICS_NAMESPACE = "BabyweightBatchPredict"
LOG_WRITTEN, LOG_DROPPED = "request_log_written", "request_log_dropped"
ATTEMPTS = "request_log_attempts"
ATTEMPTS_SUFFIX = ".request-log-attempts"  # beside the output: the kept attempts' tags
LOCK_NAME = ".batch-predict.lock"


class LogPredictions(beam.DoFn):
    """Writes each predicted row to the request log, staged per bundle attempt; outputs the
    rows, and the attempt's tag once (tagged ATTEMPTS)."""

    def __init__(self, directory: str, sample_rate: float, version: int, run: str,
                 prediction_column: str) -> None:
        self._config = (directory, sample_rate)
        self._version, self._run, self._column = version, run, prediction_column
        self._log: Any = None
        self._tag, self._untold = "", False

    def start_bundle(self) -> None:
        self._tag, self._untold = f"{self._run}-{uuid.uuid4().hex[:12]}", True
        self._log = request_log.RequestLog(
            request_log.RequestLogConfig(*self._config, staging=self._tag))

    def process(self, element: Tuple[int, Dict[str, Any]]) -> Iterable[Any]:
        if self._untold:
            self._untold = False
            yield beam.pvalue.TaggedOutput(ATTEMPTS, (0, self._tag))
        _, record = element
        self._log.log([record], [record[self._column]], self._version)
        yield element

    def finish_bundle(self) -> None:
        self._log.close()
        for name, count in ((LOG_WRITTEN, self._log.written), (LOG_DROPPED, self._log.dropped)):
            beam.metrics.Metrics.counter(METRICS_NAMESPACE, name).inc(count)


def logged(records: Any, config: Any, version: int, run: str, prediction_column: str) -> Any:
    """`records`, logged to config.request_log_dir; the kept attempts' tags go to part files
    of `<output>.request-log-attempts` for `publish`."""
    outputs = records | "RequestLog" >> beam.ParDo(LogPredictions(
        config.request_log_dir, config.request_log_sample_rate, version, run,
        prediction_column)).with_outputs(ATTEMPTS, main="records")
    _ = (outputs[ATTEMPTS]
         | "WriteLogAttempts" >> batch_output.WriteInOrder(config.output + ATTEMPTS_SUFFIX, run))
    return outputs.records


@contextlib.contextmanager
def held(directory: Optional[str]) -> Iterator[None]:
    """Holds the log directory for one batch prediction and removes what killed runs staged.
    A directory that cannot be made is no error here: the log drops its rows, which fails the
    job with the cause (`complete`)."""
    if not directory:
        yield
        return
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError:
        yield
        return
    with batch_output.held(os.path.join(directory, LOCK_NAME), directory):
        request_log.remove_staged(pathlib.Path(directory))
        yield


def publish(config: Any, run: str) -> None:
    """(The predictions assembled.) Makes the kept attempts' log files readable, deletes the
    files of attempts Beam discarded."""
    if not config.request_log_dir:
        return
    attempts = config.output + ATTEMPTS_SUFFIX
    tags = set(batch_output.read_parts(attempts, run))
    directory = pathlib.Path(config.request_log_dir)
    request_log.publish(directory, tags, request_log.RequestLogConfig(
        config.request_log_dir).max_total_bytes)
    request_log.remove_staged(directory, run)
    batch_output.remove_parts(attempts, run)


def discard(config: Any, run: str) -> None:
    """(The run failed.) Deletes everything the run staged."""
    if config.request_log_dir:
        request_log.remove_staged(pathlib.Path(config.request_log_dir), run)
        batch_output.remove_parts(config.output + ATTEMPTS_SUFFIX, run)


def counted(result: Any, name: str) -> int:
    counters = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    if not counters:
        return 0
    values = [c.committed if c.committed is not None else c.attempted for c in counters]
    return int(sum(values))


def complete(config: Any, result: Any) -> int:
    """A request log asked for is part of the work: rows it dropped are an error, not a
    warning alone (monitoring would read a window with them missing)."""
    if not config.request_log_dir:
        return 0
    written, dropped = counted(result, LOG_WRITTEN), counted(result, LOG_DROPPED)
    print(f"Request log: {written} rows written -> {config.request_log_dir}")
    if dropped:
        print(f"error: the request log dropped {dropped} of {written + dropped} sampled rows "
              "(the warning above says why); the predictions themselves are complete",
              file=sys.stderr)
        return 1
    return 0
