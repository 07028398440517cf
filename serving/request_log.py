"""A sample of served requests with their predictions, written off the request path.

Why: monitoring compares what the model is asked with what it was trained on, so the server
keeps a sample of its traffic in a format TFDV reads directly: TFRecord files of tf.Example, one
example per predicted row, holding the features as the model saw them, the prediction, the
model version that answered and the time (`RECORD_KEYS`).

The caller's side is one non-blocking `log()` call: a sampling draw and an append to a bounded
queue. A background thread drains the queue a few times a second, encodes and writes. Files
rotate at a size or an age, an open file carries a `.partial` suffix until it is complete (a
reader never sees half a file), and the oldest complete files are deleted to keep the directory
within its total size. Nothing here ever raises into the caller: a full queue, a full disk or
an unwritable directory drops records, counts them in `dropped`, and logs each kind of failure
once.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import functools
import logging
import os
import pathlib
import random
import struct
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set

from modules import features

LOGGER = logging.getLogger("babyweight.serving.request_log")

PREDICTION_KEY = "predicted_" + features.LABEL_KEY
VERSION_KEY = "model_version"
TIME_KEY = "request_time_ms"
RECORD_KEYS = (*features.FEATURE_NAMES, PREDICTION_KEY, VERSION_KEY, TIME_KEY)
SUFFIX = ".tfrecord"
PARTIAL = ".partial"


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

    def __post_init__(self) -> None:
        if not 0.0 <= self.sample_rate <= 1.0:
            raise ValueError(f"the request log's sample rate must be in [0, 1], "
                             f"got {self.sample_rate}")
        if self.max_file_bytes <= 0 or self.max_total_bytes < self.max_file_bytes:
            raise ValueError("the request log needs 0 < max_file_bytes <= max_total_bytes, got "
                             f"{self.max_file_bytes} and {self.max_total_bytes}")


def _missing_as_declared(name: str, value: Any) -> Any:
    """A blank categorical means the declared missing value, as the Transform reads it."""
    declared = features.by_name(name)
    if isinstance(declared, features.CategoricalFeature):
        return value if value not in (None, "", b"") else declared.missing_value or ""
    return value


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf writes it: two's complement, ten bytes if < 0
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _entry(name: str, kind: int, payload: bytes) -> bytes:
    """One entry of tf.Example's feature map: key, and a Feature holding one list."""
    feature = _field(kind, _field(0x0A, payload))
    return _field(0x0A, _field(0x0A, name.encode()) + _field(0x12, feature))


_BYTES, _FLOATS, _INTS = 0x0A, 0x12, 0x1A  # Feature's bytes_list, float_list, int64_list


@functools.lru_cache(maxsize=1024)
def _string_entry(name: str, raw: bytes) -> bytes:
    """Categorical values repeat (their vocabulary is small): each entry is encoded once."""
    return _entry(name, _BYTES, raw)


def encode(instance: Mapping[str, Any], prediction: float, version: int, millis: int) -> bytes:
    """One serialized tf.Example: numerics as whole numbers (the model rounds them), strings.

    Written straight in protobuf's wire format (the same bytes tf.train.Example would parse),
    because building the message objects cost the writer thread several times as much CPU,
    taken from the server it shares the interpreter with.
    """
    entries = []
    for declared in features.FEATURES:
        value = _missing_as_declared(declared.name, instance.get(declared.name))
        if isinstance(declared, features.CategoricalFeature):
            raw = value.encode() if isinstance(value, str) else bytes(value)
            entries.append(_string_entry(declared.name, raw))
        else:
            entries.append(_entry(declared.name, _INTS, _varint(int(round(float(value))))))
    entries.append(_entry(PREDICTION_KEY, _FLOATS, struct.pack("<f", float(prediction))))
    entries.append(_entry(VERSION_KEY, _INTS, _varint(int(version))))
    entries.append(_entry(TIME_KEY, _INTS, _varint(int(millis))))
    return _field(0x0A, b"".join(entries))


def complete_files(directory: pathlib.Path) -> List[pathlib.Path]:
    """The log's complete files, oldest first (names sort by the time they were opened)."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX) and p.is_file())


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
        self._opener = opener or _tfrecord_writer
        self._clock = clock
        self._reported: Set[str] = set()
        self._lock = threading.Lock()
        self._file: Any = None
        self._path: Optional[pathlib.Path] = None
        self._file_bytes = 0
        self._file_records = 0
        self._opened_at = 0.0
        self._sequence = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    # -- the caller's side ------------------------------------------------------------------------
    def log(self, instances: Sequence[Mapping[str, Any]], predictions: Sequence[float],
            version: int) -> None:
        """Queues one request's rows, if the request is sampled; never blocks, never raises.

        A deque's append wakes no thread: the writer drains the queue every `drain_seconds`,
        so the server's thread is not made to hand the interpreter over once per request.
        """
        try:
            if self.config.sample_rate < 1.0 and self._random.random() >= self.config.sample_rate:
                return
            if len(self._pending) >= self.config.queue_size:
                self._drop(len(predictions), "full-queue", "the request log's queue is full (the "
                           "disk is slower than the traffic); dropping sampled requests")
                return
            self._pending.append((instances, predictions, version, int(self._clock() * 1000)))
        except Exception as error:  # noqa: BLE001 - logging must never fail a request
            self._drop(len(predictions), type(error).__name__, f"request log: {error}")

    def log_columns(self, columns: Mapping[str, Sequence[Any]], predictions: Any,
                    version: int) -> None:
        """`log` for the server's columns (feature -> values); rows are built off the path."""
        self.log(_Columns(columns), predictions, version)

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
            while self._pending:
                item = self._pending.popleft()
                try:
                    self._write(*item)
                except Exception as error:  # noqa: BLE001 - the thread must outlive any record
                    self._drop(0, "writer", f"request log: {error}")
            if stopping or flushes:
                self._complete()  # a flush makes everything written so far readable
            else:
                self._rotate_if_old()
            for done in flushes:
                self._flushes.remove(done)
                done.set()
            if stopping:
                return

    def _write(self, instances: Sequence[Mapping[str, Any]], predictions: Sequence[float],
               version: int, millis: int) -> None:
        try:
            if isinstance(instances, _Columns):
                instances = instances.rows()
            predictions = [float(p) for p in _flat(predictions)]
            records = [encode(i, p, version, millis) for i, p in zip(instances, predictions)]
        except Exception as error:  # noqa: BLE001
            self._drop(len(predictions), "encode", f"request log: cannot encode a request: {error}")
            return
        try:
            if self._file is None:
                self._open()
            for record in records:
                self._file.write(record)
            self._file_bytes += sum(len(r) + 16 for r in records)  # TFRecord framing: 16 bytes
            self._file_records += len(records)
            self.written += len(records)
        except Exception as error:  # noqa: BLE001 - a full disk or a gone directory
            lost = self._abandon()
            self._drop(len(records) + lost, type(error).__name__,
                       f"request log: cannot write to {self.directory}: {error}")
            return
        if self._file_bytes >= self.config.max_file_bytes:
            self._complete()

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._make_room()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        self._sequence += 1
        self._path = self.directory / f"requests-{stamp}-{os.getpid()}-{self._sequence:06d}"
        self._file = self._opener(str(self._path) + SUFFIX + PARTIAL)
        self._file_bytes = 0
        self._file_records = 0
        self._opened_at = time.monotonic()

    def _make_room(self) -> None:
        """Deletes the oldest complete files until a new full file fits in the total."""
        files = complete_files(self.directory)
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values())
        for path in files:
            if total + self.config.max_file_bytes <= self.config.max_total_bytes:
                break
            path.unlink(missing_ok=True)
            total -= sizes[path]

    def _complete(self) -> None:
        if self._file is None:
            return
        try:
            self._file.close()
            os.replace(str(self._path) + SUFFIX + PARTIAL, str(self._path) + SUFFIX)
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
                os.unlink(str(self._path) + SUFFIX + PARTIAL)
            except OSError:
                pass
        self._file = None
        return lost

    def _rotate_if_old(self) -> None:
        if (self._file is not None
                and time.monotonic() - self._opened_at >= self.config.max_file_seconds):
            self._complete()


class _Columns:
    """A request's columns, turned into rows by the writer thread."""

    def __init__(self, columns: Mapping[str, Sequence[Any]]) -> None:
        self.columns = columns

    def rows(self) -> List[Dict[str, Any]]:
        names = list(self.columns)
        count = len(self.columns[names[0]]) if names else 0
        return [{n: _plain(self.columns[n][i]) for n in names} for i in range(count)]


def _plain(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _flat(values: Any) -> List[Any]:
    import numpy as np

    return list(np.asarray(values).reshape(-1))


def _tfrecord_writer(path: str) -> Any:
    import tensorflow as tf

    return tf.io.TFRecordWriter(path)
