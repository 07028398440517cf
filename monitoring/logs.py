"""Reading a window of the request log (serving/request_log.py) into columns.

Records are read with tf.data's C++ reader and parsed a large batch at a time, so a million
logged requests take seconds; the window is a half-open range of request times.
"""
from __future__ import annotations

import dataclasses
import datetime
import math
import pathlib
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from modules import features
from serving import log_lock, request_log

_BATCH = 65_536


@dataclasses.dataclass(frozen=True)
class Window:
    """Requests logged at start <= time < end (milliseconds since the epoch)."""

    start_ms: int
    end_ms: int

    def previous(self) -> "Window":
        """The window of the same length just before this one."""
        length = self.end_ms - self.start_ms
        return Window(self.start_ms - length, self.start_ms)

    def describe(self) -> str:
        """'<start> to <end>' in UTC, with milliseconds when a bound is not a whole second: a
        default end is just after the newest request, and a label cut to seconds would name
        two windows with different rows alike."""
        exact = bool(self.start_ms % 1000 or self.end_ms % 1000)

        def text(millis: int) -> str:
            seconds, rest = divmod(millis, 1000)
            moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
            return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{rest:03d}" if exact else "") + " UTC"
        return f"{text(self.start_ms)} to {text(self.end_ms)}"


def parse_time(text: str) -> int:
    """Milliseconds since the epoch from an ISO time ('2026-12-01T10:00', UTC unless given)
    or a number of seconds since the epoch."""
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"a time is an ISO time like 2026-12-01T10:00 or a number of "
                             f"seconds since the epoch; got {text!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.timezone.utc)
        seconds = moment.timestamp()
    if not (math.isfinite(seconds) and describable(int(seconds * 1000))):
        raise ValueError(f"a time must be between the years 1 and 9999; got {text!r}")
    return int(seconds * 1000)


def parse_duration(text: str) -> int:
    """Milliseconds from '90s', '15m', '2h', '1d' (or a bare number of seconds)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    unit = text[-1:].lower()
    number = text[:-1] if unit in units else text
    try:
        seconds = float(number) * units.get(unit, 1)
    except ValueError:
        raise ValueError(f"a window is a number of seconds, minutes, hours or days, like 90s, "
                         f"15m, 2h or 1d; got {text!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a window must be longer than zero and finite, got {text!r}")
    if seconds < 0.001:  # a window holds whole milliseconds, the log's resolution
        raise ValueError(f"a window must be at least a millisecond, got {text!r}")
    return int(seconds * 1000)


def describable(millis: int) -> bool:
    """Whether a time (ms since the epoch) is one a window can start or end at: a datetime,
    so that a window, and the one before it, can be described."""
    try:
        datetime.datetime.fromtimestamp(millis / 1000, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return False
    return True


def _spec() -> Dict[str, object]:
    import tensorflow as tf

    spec: Dict[str, object] = {}
    for declared in features.FEATURES:
        kind = tf.string if isinstance(declared, features.CategoricalFeature) else tf.int64
        spec[declared.name] = tf.io.FixedLenFeature([], kind)
    spec[request_log.PREDICTION_KEY] = tf.io.FixedLenFeature([], tf.float32)
    spec[request_log.VERSION_KEY] = tf.io.FixedLenFeature([], tf.int64)
    spec[request_log.TIME_KEY] = tf.io.FixedLenFeature([], tf.int64)
    return spec


def select(frame: pd.DataFrame, window: Window) -> pd.DataFrame:
    times = frame[request_log.TIME_KEY]
    return frame[(times >= window.start_ms) & (times < window.end_ms)]


class UnreadableLogError(ValueError):
    """A complete request-log file whose records do not read back (cut short, or not ours)."""


def read(files: Sequence[pathlib.Path], window: Optional[Window] = None,
         gone: Optional[List[pathlib.Path]] = None) -> pd.DataFrame:
    """The logged rows of `files` within `window` (all when None), one column per record key.

    A file deleted since it was listed (the server deletes the oldest files to keep the log
    within its size) is skipped and appended to `gone`, for the caller to say; without `gone`
    it is an error naming it."""
    import tensorflow as tf

    columns: Dict[str, List[np.ndarray]] = {key: [] for key in request_log.RECORD_KEYS}
    for file in files:  # one at a time, so a file that cannot be read is named
        if not file.is_file():
            if gone is None:
                raise FileNotFoundError(f"the request-log file {file} was deleted while the "
                                        "log was read")
            gone.append(file)
            continue
        dataset = (tf.data.TFRecordDataset([str(file)])
                   .batch(_BATCH).map(lambda batch: tf.io.parse_example(batch, _spec())))
        try:
            for batch in dataset.as_numpy_iterator():
                times = batch[request_log.TIME_KEY]
                keep = (np.ones(times.shape, bool) if window is None
                        else (times >= window.start_ms) & (times < window.end_ms))
                for key in request_log.RECORD_KEYS:
                    columns[key].append(batch[key][keep])
        except tf.errors.NotFoundError:  # deleted after the check above
            if gone is None:
                raise FileNotFoundError(f"the request-log file {file} was deleted while the "
                                        "log was read") from None
            gone.append(file)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            cut = re.search(r"truncated record at (\d+)", error.message)
            detail = (f"its record at byte {cut.group(1)} is cut short" if cut else
                      f"it holds no request-log records (tf.data: {type(error).__name__})")
            raise UnreadableLogError(f"the request-log file {file} cannot be read: {detail}; "
                                     "move it out of the log directory") from error
    frame = pd.DataFrame({key: (np.concatenate(parts) if parts else np.array([]))
                          for key, parts in columns.items()})
    for declared in features.CATEGORICAL_FEATURES:
        frame[declared.name] = frame[declared.name].map(
            lambda v: v.decode() if isinstance(v, bytes) else v)
    return frame


def read_directory(directory: pathlib.Path, wait_seconds: float = log_lock.WAIT_SECONDS
                   ) -> Tuple[List[pathlib.Path], List[pathlib.Path], pd.DataFrame,
                              List[pathlib.Path]]:
    """The log directory's open files, its complete files, their rows, and those of them the
    server deleted (trimmed to its size) before they were read; no complete file is an error.
    Listed and read under the publish lock (serving/log_lock.py): an export's or a batch
    prediction's window is read whole or not at all (waiting up to `wait_seconds` for one)."""
    with log_lock.reading(directory, wait_seconds):
        # Listed first: a file completed between the two listings is then in `files`.
        opened = request_log.open_files(directory)
        files = request_log.complete_files(directory)
        if not files:
            raise FileNotFoundError(f"no complete request-log files in {directory}" + (
                f" ({len(opened)} still open: rerun once the server has completed them)"
                if opened else "; start the server with --request-log-dir"))
        gone: List[pathlib.Path] = []
        return opened, files, read(files, gone=gone), gone


def gone_text(gone: Sequence[pathlib.Path]) -> Optional[str]:
    """Why rows may be missing: files `read` skipped, deleted by the server while being read."""
    if not gone:
        return None
    return (f"{len(gone)} request-log file{'s' if len(gone) > 1 else ''} "
            f"({', '.join(p.name for p in gone)}) deleted while being read (the server deletes "
            "the oldest files to keep the log within its size): their rows are not counted")


def trimmed_before(gone: Sequence[pathlib.Path], end_ms: int) -> List[pathlib.Path]:
    """The files deleted while read (`read`'s `gone`) that may have held records from before
    `end_ms`: opened before it by the log clock their names carry, or named otherwise. Which
    of their records were before the window's start is not known (a file's name tells when it
    was opened, not until when it was written), so each counts as missing records of it."""
    return [path for path in gone
            if (request_log.opened_ms(path) is None or request_log.opened_ms(path) < end_ms)]


def _written_times(path: pathlib.Path) -> np.ndarray:
    """The request times of an open file's records written so far; its last record may be
    half written, so the TFRecord framing is walked here and reading stops where it ends."""
    import tensorflow as tf

    data, records, at = path.read_bytes(), [], 0
    while at + 12 <= len(data):  # length (8 bytes) and its checksum (4), data, checksum (4)
        length = int.from_bytes(data[at:at + 8], "little")
        if at + 16 + length > len(data):
            break
        records.append(data[at + 12:at + 12 + length])
        at += 16 + length
    if not records:
        return np.array([], np.int64)
    spec = {request_log.TIME_KEY: tf.io.FixedLenFeature([], tf.int64)}
    return tf.io.parse_example(records, spec)[request_log.TIME_KEY].numpy()


def open_before(open_files: Sequence[pathlib.Path], complete: Sequence[pathlib.Path],
                end_ms: int) -> List[pathlib.Path]:
    """The open files (listed before `complete`) that hold, or may yet hold, records logged
    before `end_ms`: opened before it, or with such a record written. Those records are in no
    complete file, so a window read from `complete` leaves them out, and the next window,
    starting at `end_ms`, would too. A file completed since the listing is read as complete
    when it is in `complete`, and counted here when it is not."""
    names = {path.name for path in complete}
    held = []
    for path in open_files:
        if path.name[:-len(request_log.PARTIAL)] in names:
            continue
        opened = request_log.opened_ms(path)
        if opened is None or opened < end_ms:
            held.append(path)
            continue
        try:
            times = _written_times(path)
        except FileNotFoundError:  # completed after `complete` was listed
            held.append(path)
            continue
        if times.size and times.min() < end_ms:
            held.append(path)
    return held
