"""Progress lines for the steps that read ExampleGen's examples: StatisticsGen, Transform, Evaluator.

Why: on big data these steps take most of a local run, and without --verbose they said nothing
until they ended. The batched reader (pipelines/speedups/batched_reads.py) counts the records it
hands to the step, per split, and logs through `babyweight.reads` (shown by common/logs.py's
filter) one line at each tenth of the split: at most LINES_PER_SPLIT lines per split and step,
whatever its size, none rewritten in place, so a log file stays readable.

The split's total comes from ExampleGen: DuckDBExampleGen records each split's row count on its
Examples artifact (custom property SPLIT_ROWS_PROPERTY). Examples without it (written before it
was recorded, or by another ExampleGen) get a line every UNKNOWN_TOTAL_EVERY records, without a
share of the total. On the stock path (Vertex: BigQueryExampleGen, the stock components reading
with TFXIO's own source on Dataflow) none of this runs: Dataflow's job page shows each step's
element counts instead.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
import uuid
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Tuple

SPLIT_ROWS_PROPERTY = "split_rows"  # JSON {split name: rows} on the Examples artifact
SPLIT_ROWS_NAMESPACE = "babyweight_split_rows"  # ExampleGen's Beam counters, one per split
LINES_PER_SPLIT = 10
UNKNOWN_TOTAL_EVERY = 1_000_000

progress = logging.getLogger("babyweight.reads")

_split_rows: Dict[str, int] = {}  # split directory -> rows, for the step running now
_counts: Dict[Tuple[str, str], Tuple[int, float]] = {}  # (reading, directory) -> records, start
_lock = threading.Lock()


def _directory(path: str) -> str:
    return os.path.normpath(path)


def record_split_rows(examples: Any, result: Any) -> None:
    """Stores each split's row count, from the finished Beam pipeline's counters, on `examples`."""
    from apache_beam.metrics.metric import MetricsFilter

    query = result.metrics().query(MetricsFilter().with_namespace(SPLIT_ROWS_NAMESPACE))
    rows: Dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        rows[counter.key.metric.name] = rows.get(counter.key.metric.name, 0) + int(value)
    examples.set_string_custom_property(SPLIT_ROWS_PROPERTY, json.dumps(rows, sort_keys=True))


@contextlib.contextmanager
def known_split_rows(examples: Sequence[Any]) -> Iterator[None]:
    """While inside, readers of these Examples know each split's rows (steps run one at a time)."""
    from tfx.types import artifact_utils

    added = {}
    for artifact in examples:
        recorded = artifact.get_string_custom_property(SPLIT_ROWS_PROPERTY)
        for split, rows in (json.loads(recorded) if recorded else {}).items():
            added[_directory(artifact_utils.get_split_uri([artifact], split))] = int(rows)
    before = dict(_split_rows)
    _split_rows.update(added)
    try:
        yield
    finally:
        _split_rows.clear()
        _split_rows.update(before)


@dataclasses.dataclass(frozen=True)
class ReadProgress:
    """One reading of examples by `step`; the Beam workers doing it share its counts."""

    step: str
    totals: Mapping[str, int]  # split directory -> rows
    reading: str

    def counted(self, path: str, batches: Iterator[Any]) -> Iterator[Any]:
        """`batches` (Arrow RecordBatches read from file `path`), counted as they pass."""
        directory = _directory(os.path.dirname(path))
        try:
            for batch in batches:
                self._add(directory, batch.num_rows)
                yield batch
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()

    def _add(self, directory: str, records: int) -> None:
        with _lock:
            before, started = _counts.get((self.reading, directory), (0, time.monotonic()))
            _counts[(self.reading, directory)] = (before + records, started)
        line = progress_line(before, before + records, self.totals.get(directory))
        if line is not None:
            split = os.path.basename(directory).removeprefix("Split-")
            progress.info("%s split %s: %s after %.0f s", self.step, split, line,
                          time.monotonic() - started)


def progress_line(before: int, after: int, total: Optional[int]) -> Optional[str]:
    """What to log when a split's count goes from `before` to `after` records; None: nothing.

    A line at each tenth of a known total; past the total (which a recorded total then fails
    to describe) or without one, a line every UNKNOWN_TOTAL_EVERY records.
    """
    if total and after <= total:
        if after * LINES_PER_SPLIT // total > before * LINES_PER_SPLIT // total:
            return f"{after} of {total} records read ({100 * after // total}%)"
        return None
    if after // UNKNOWN_TOTAL_EVERY > before // UNKNOWN_TOTAL_EVERY:
        return f"{after} records read"
    return None


def for_step(telemetry_descriptors: Optional[Sequence[str]]) -> ReadProgress:
    """A new reading by the step TFX's executor names in its TFXIO's telemetry descriptors."""
    step = telemetry_descriptors[0] if telemetry_descriptors else "Reading"
    return ReadProgress(step, dict(_split_rows), uuid.uuid4().hex)
