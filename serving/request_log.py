"""A sample of served requests with their predictions, written off the request path.

Why: monitoring compares what the model is asked with what it was trained on, so the server
keeps a sample of its traffic in a format TFDV reads directly: TFRecord files of tf.Example, one
example per predicted row, holding the features as the model saw them, the prediction, the
model version that answered and the time (`RECORD_KEYS`).

The caller's side is one non-blocking `log()` call: a sampling draw and an append to a bounded
queue, holding references to the request's own objects (nothing is copied). A background
thread drains the queue a few times a second, encodes (serving/log_records.py) and writes,
paced as the model loader is (serving/pacing.py): a short burst holding the interpreter, then
a pause in which the requests have it (at the default sample rate a drain is one burst). Files
rotate at a size or an age, an open file carries a `.partial` suffix until it is complete (a
reader never sees half a file; batch prediction's complete files are staged until its run has
succeeded, serving/batch_log.py), and the oldest complete files are deleted to keep the directory
within its total size. Nothing here ever raises into the caller: a full queue, a full disk or
an unwritable directory drops records, counts them in `dropped`, and logs each kind of failure
once.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import errno
import glob
import logging
import os
import pathlib
import random
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set

from serving.log_records import (PREDICTION_KEY, RECORD_KEYS, TIME_KEY,  # noqa: F401
                                 VERSION_KEY, ExampleRows, encode, encode_columns, framed)
from serving.log_lock import publishing
from serving.pacing import Pace

LOGGER = logging.getLogger("babyweight.serving.request_log")

SUFFIX = ".tfrecord"
PARTIAL = ".partial"
STAGED = ".staged-"  # + a tag: complete, but hidden from readers until `publish`


@dataclasses.dataclass(frozen=True)
class RequestLogConfig:
    """Where the log goes, how much of the traffic it keeps, and how much disk it may use."""

    directory: str
    sample_rate: float = 0.1
    max_total_bytes: int = 256 * 1024 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    max_file_seconds: float = 60.0
    queue_size: int = 10_000
    drain_seconds: float = 0.25
    seed: Optional[int] = None
    # Batch prediction's: files complete under a staged name carrying this tag, which readers
    # do not see until `publish` (a killed run's rows must not be counted, nor twice on rerun).
    staging: Optional[str] = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"the request log's sample rate must be in [0, 1], "
                             f"got {self.sample_rate}")
        if self.max_file_bytes <= 0 or self.max_total_bytes < self.max_file_bytes:
            raise ValueError("the request log needs 0 < max_file_bytes <= max_total_bytes, got "
                             f"{self.max_file_bytes} and {self.max_total_bytes}")


def complete_files(directory: pathlib.Path) -> List[pathlib.Path]:
    """The log's complete files, oldest first (names sort by the time they were opened)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())


_STAMP = "%Y%m%dT%H%M%S%f"


def file_stem(directory: pathlib.Path, opened_at: float, pid: int, sequence: int
              ) -> pathlib.Path:
    """A log file's path before its suffixes: named by the time it was opened (seconds since
    the epoch, by the log's clock), so names sort by age and a reader can tell its age."""
    stamp = datetime.datetime.fromtimestamp(opened_at, datetime.timezone.utc).strftime(_STAMP)
    return directory / f"requests-{stamp}-{pid}-{sequence:06d}"


def opened_ms(path: pathlib.Path) -> Optional[int]:
    """When the file named `path` was opened (ms since the epoch), None for another name."""
    try:
        moment = datetime.datetime.strptime(path.name.split("-")[1], _STAMP)
    except (IndexError, ValueError):
        return None
    return int(moment.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def open_files(directory: pathlib.Path) -> List[pathlib.Path]:
    """The files still being written (`.partial`, not staged), oldest first: their records are
    in no complete file yet."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith(SUFFIX + PARTIAL) and p.is_file())


def staged_files(directory: pathlib.Path, tag: str = "") -> List[pathlib.Path]:
    """Files staged (complete or still open) under a tag that starts with `tag`."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"*{SUFFIX}{STAGED}{glob.escape(tag)}*")
                  if p.is_file())


def publish(directory: pathlib.Path, tags: Set[str], max_total_bytes: int) -> int:
    """Gives the complete files staged under `tags` their complete names under the directory's
    publish lock (a reader sees none or all of them), then trims; returns how many."""
    with publishing(directory):
        staged = [p for p in staged_files(directory) if p.name.partition(STAGED)[2] in tags]
        for path in staged:
            os.replace(path, path.with_name(path.name.partition(STAGED)[0]))
        trim(directory, max_total_bytes)
    return len(staged)


def remove_staged(directory: pathlib.Path, tag: str = "") -> None:
    """Deletes the files staged under tags starting with `tag` (runs or attempts not kept)."""
    for path in staged_files(directory, tag):
        LOGGER.info("Removing %s, staged by a batch prediction that did not finish", path)
        path.unlink(missing_ok=True)


def trim(directory: pathlib.Path, max_total_bytes: int, room: int = 0) -> None:
    """Deletes the oldest complete files until `room` more bytes fit in `max_total_bytes`."""
    sizes = {}
    for path in complete_files(directory):
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:  # another writer of this directory made room first
            continue
    total = sum(sizes.values())
    for path in list(sizes):
        if total + room <= max_total_bytes:
            break
        path.unlink(missing_ok=True)
        total -= sizes[path]


class RequestLog:
    """Sampled, bounded, background logging of predictions; see the module docstring."""

    def __init__(self, config: RequestLogConfig,
                 opener: Optional[Callable[[str], Any]] = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.directory = pathlib.Path(config.directory)
        self.written = 0
        self.dropped = 0
        self._random = random.Random(config.seed)
        self._pending: "collections.deque[Any]" = collections.deque()
        self._flushes: List[threading.Event] = []
        self._wake = threading.Event()
        self._stopping = False
        self._opener = opener or _unbuffered_file
        self._clock = clock
        self._reported: Set[str] = set()
        self._lock = threading.Lock()
        self._file: Any = None
        self._path: Optional[pathlib.Path] = None
        self._file_bytes = 0
        self._file_records = 0
        self._opened_at = 0.0
        self._sequence = 0
        self._pace = Pace()
        self._unwritten: List[bytes] = []  # framed records encoded since the last write
        self._unwritten_rows = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------------
    def log(self, instances: Sequence[Mapping[str, Any]], predictions: Sequence[float],
            version: int) -> None:
        """Queues one request's rows (dicts), if the request is sampled; never blocks or raises."""
        self._enqueue(False, instances, predictions, version)

    def log_columns(self, columns: Mapping[str, Sequence[Any]], predictions: Any,
                    version: int) -> None:
        """`log` for the server's columns (feature -> values), the server's own objects."""
        self._enqueue(True, columns, predictions, version)

    def log_examples(self, examples: Sequence[bytes], predictions: Any, version: int) -> None:
        """`log` for serialized tf.Examples, decoded by the writer thread, not the request's."""
        self._enqueue(False, ExampleRows(examples), predictions, version)

    def _enqueue(self, columnar: bool, values: Any, predictions: Any, version: int) -> None:
        """The request path's whole share: a draw, and if sampled, references onto a deque.

        Nothing is copied or converted here (the writer thread encodes), and a deque's append
        wakes no thread: the writer drains the queue every `drain_seconds`, so the server's
        thread is not made to hand the interpreter over once per request.
        """
        try:
            if self.config.sample_rate < 1.0 and self._random.random() >= self.config.sample_rate:
                return
            if len(self._pending) >= self.config.queue_size:
                self._drop(len(predictions), "full-queue", "the request log's queue is full (the "
                           "disk is slower than the traffic); dropping sampled requests")
                return
            self._pending.append((columnar, values, predictions, version,
                                  int(self._clock() * 1000)))
        except Exception as error:  # noqa: BLE001 - logging must never fail a request
            self._drop(len(predictions), type(error).__name__, f"request log: {error}")

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until everything queued so far is written (or dropped) and readable."""
        done = threading.Event()
        self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Writes what is queued, completes the open file and stops the thread."""
        if not self._thread.is_alive():
            return
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def status(self) -> Dict[str, Any]:
        return {"directory": str(self.directory), "sample_rate": self.config.sample_rate,
                "written": self.written, "dropped": self.dropped}

    # -- the writer thread ------------------------------------------------------------------------
    def _drop(self, count: int, kind: str, message: str) -> None:
        with self._lock:
            self.dropped += count
            first = kind not in self._reported
            self._reported.add(kind)
        if first:
            LOGGER.warning("%s (counted in the dropped records from now on)", message)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.config.drain_seconds)
            self._wake.clear()
            stopping, flushes = self._stopping, list(self._flushes)
            self._drain()
            if stopping or flushes:
                self._complete()  # a flush makes everything written so far readable
            else:
                self._rotate_if_old()
            for done in flushes:
                self._flushes.remove(done)
                done.set()
            if stopping:
                return

    def _drain(self) -> None:
        """Writes everything queued, paced: a request waiting for the interpreter gets it
        within one burst (serving/pacing.py), not within Python's switch interval. A burst's
        records go to the file in one write, which gives the GIL back once, not per record."""
        pace, pending = self._pace, self._pending
        behind = max(1, self.config.queue_size // 2)
        pace.restart()
        while pending:
            item = pending.popleft()
            try:
                self._encode(*item)
            except Exception as error:  # noqa: BLE001 - the thread must outlive any record
                self._drop(0, "writer", f"request log: {error}")
            if not pending or pace.due():
                self._write_out()
                if len(pending) < behind:
                    pace()
                else:  # half the queue waits: catch up rather than drop (batch prediction)
                    pace.restart()

    def _encode(self, columnar: bool, values: Any, predictions: Any, version: int,
                millis: int) -> None:
        """Encodes one request's rows for the next write (opening a file if none is open)."""
        count = 0
        try:
            flat = [float(p) for p in _flat(predictions)]
            count = len(flat)
            if columnar:
                records = encode_columns(values, flat, version, millis)
            else:
                records = [encode(i, p, version, millis) for i, p in zip(values, flat)]
            data = framed(records)
        except Exception as error:  # noqa: BLE001
            self._drop(count, "encode", f"request log: cannot encode a request: {error}")
            return
        if self._file is None:
            try:
                self._open()
            except Exception as error:  # noqa: BLE001 - an unwritable directory
                self._cannot_write(len(records), error)
                return
        self._unwritten.append(data)
        self._unwritten_rows += len(records)
        self._file_bytes += len(data)
        if self._file_bytes >= self.config.max_file_bytes:
            self._complete()

    def _write_out(self) -> None:
        """One write of what was encoded since the last; a failed one loses the open file."""
        if not self._unwritten:
            return
        data, rows = b"".join(self._unwritten), self._unwritten_rows
        self._unwritten, self._unwritten_rows = [], 0
        try:
            _write_all(self._file, data)
        except Exception as error:  # noqa: BLE001 - a full disk or a gone directory
            self._cannot_write(rows + self._abandon(), error)
            return
        self._file_records += rows
        self.written += rows

    def _cannot_write(self, count: int, error: Exception) -> None:
        self._drop(count, type(error).__name__,
                   f"request log: cannot write to {self.directory}: {error}")

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        trim(self.directory, self.config.max_total_bytes, self.config.max_file_bytes)
        self._sequence += 1
        self._path = file_stem(self.directory, self._clock(), os.getpid(), self._sequence)
        self._file = self._opener(self._named(partial=True))
        self._file_bytes = 0
        self._file_records = 0
        self._opened_at = time.monotonic()

    def _named(self, partial: bool = False) -> str:
        """The open file's name, or (`partial` False) the name it completes under."""
        name = str(self._path) + SUFFIX
        if self.config.staging:
            name += STAGED + self.config.staging
        return name + PARTIAL if partial else name

    def _complete(self) -> None:
        if self._file is not None:
            self._write_out()
        if self._file is None:  # never opened, or lost to a failed write
            return
        try:
            self._file.close()
            os.replace(self._named(partial=True), self._named())
        except Exception as error:  # noqa: BLE001
            self._drop(0, "complete", f"request log: cannot complete {self._path}: {error}")
        self._file = None
        self._file_records = 0

    def _abandon(self) -> int:
        """Deletes the open file after a failed write (its end may be torn); returns the records
        it held, which count as dropped instead of written."""
        lost = self._file_records if self._file is not None else 0
        self.written -= lost
        self._file_records = 0
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # noqa: BLE001
                pass
            try:
                os.unlink(self._named(partial=True))
            except OSError:
                pass
        self._file = None
        return lost

    def _rotate_if_old(self) -> None:
        if (self._file is not None
                and time.monotonic() - self._opened_at >= self.config.max_file_seconds):
            self._complete()


def _flat(values: Any) -> List[Any]:
    import numpy as np

    return np.asarray(values, dtype=np.float64).reshape(-1).tolist()


def _unbuffered_file(path: str) -> Any:
    """Each write goes to the disk at once: a full disk fails that write, not a later one."""
    return open(path, "wb", buffering=0)  # noqa: SIM115 - closed by _complete or _abandon


def _write_all(file: Any, data: bytes) -> None:
    """Writes all of `data` (an unbuffered file may take part of it per call)."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if written is None:  # a writer that takes everything and says nothing
            return
        if written <= 0:
            raise OSError(errno.EIO, "the file took no bytes")
        view = view[written:]
