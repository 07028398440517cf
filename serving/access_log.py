"""One access-log line per request, formatted and written by a background thread.

Why: building a LogRecord, formatting its time and message and writing it cost a single-row
request several percent of its latency on the thread that answers requests. `line()` keeps the
request's share to one append of a tuple (its time, method, path, status, latency); the server
(serving/server.py) installs `Deferred`, whose thread turns the tuples into the
`babyweight.serving.access` logger's lines, with the root handlers' format, a few times a
second, in short slices between which the requests have the interpreter (that thread holds
the interpreter the requests need too). For the server's handler the lines are made from one
record per drain, its time and arguments set per line (serving/access_lines.py), and each
second's time stamp is formatted once (`stamp_once`); for any other handler each line is a
record of its own. No line is lost without a word: past `max_pending` waiting lines a request's
line is counted instead of queued, and the drain logs how many. Without `Deferred` (a test's
app), `line()` logs at once.
"""
from __future__ import annotations

import atexit
import collections
import contextlib
import copy
import logging
import threading
import time
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

from serving import access_lines

ACCESS_LOGGER = logging.getLogger("babyweight.serving.access")
_MESSAGE = "%s %s %d %.2f ms"
_SLICE_S = 0.0002  # the writer gives the interpreter back at least this often (seconds)

_deferred: Optional["Deferred"] = None
_new_record = object.__new__


def line(method: str, path: str, status: int, millis: float) -> None:
    """Logs one request's line (deferred when the server installed `Deferred`); nothing when
    the access logger is off (its level set above INFO)."""
    if not ACCESS_LOGGER.isEnabledFor(logging.INFO):
        return
    deferred = _deferred
    if deferred is None:
        ACCESS_LOGGER.info(_MESSAGE, method, path, status, millis)
    elif len(deferred.pending) < deferred.max_pending:
        deferred.pending.append((time.time(), method, path, status, millis))
    else:  # a log never blocks a request nor grows without bound; the drain says so
        deferred.count_dropped()


def _set_line(record: logging.LogRecord, queued: Tuple[float, str, str, int, float],
              made: float, relative: float) -> None:
    """`record` as the queued line's: its arguments, and its time (`made`, `relative`: the
    template record's creation time and relativeCreated)."""
    created, *args = queued
    record.args = tuple(args)
    record.created, record.msecs = created, (created % 1) * 1000
    record.relativeCreated = relative + (created - made) * 1000


class Deferred:
    """The thread that formats and hands over queued lines every `interval` seconds."""

    def __init__(self, handler: logging.Handler, interval: float = 0.2,
                 max_pending: int = 100_000) -> None:
        self.handler = handler
        self.pending: Deque[Tuple[float, str, str, int, float]] = collections.deque()
        self.max_pending = max_pending
        self.dropped = 0  # lines not queued because `max_pending` were waiting
        self._dropped_lock = threading.Lock()  # `+=` from request threads is not atomic
        self._interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def install(self) -> None:
        global _deferred
        _deferred = self
        self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
        self._thread.start()
        atexit.register(self.drain)

    @contextlib.contextmanager
    def queued_here(self) -> Iterator["Deferred"]:
        """Inside the block, `line()` queues here and no thread drains: the holder calls
        `drain` itself (benchmarks/serving_record_cost.py times a drain on its own thread)."""
        global _deferred
        before, _deferred = _deferred, self
        try:
            yield self
        finally:
            _deferred = before

    def close(self) -> None:
        """Stops the thread and writes what is still queued."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.drain()

    def drain(self) -> None:
        """Writes every queued line, in slices, then hands the handler's buffer on (a handler
        with `write_out`, the server's, has no thread of its own for that)."""
        with self._lock:
            record = _template()
            fast = access_lines.writer(self.handler, record, FORMATTERS)
            if fast is None:
                self._drain_records(record.__dict__)
            else:
                self._drain_lines(fast, record)
            self._report_dropped()
            getattr(self.handler, "write_out", self.handler.flush)()

    def _drain_lines(self, fast: access_lines.LineWriter, record: logging.LogRecord) -> None:
        """The drain's one record, its time and arguments set per line, made into the
        handler's text; one write per slice."""
        made, relative, pending = record.created, record.relativeCreated, self.pending
        lines: List[str] = []
        resumed = time.perf_counter()
        while pending:
            _set_line(record, pending.popleft(), made, relative)
            lines.append(fast.line(record))
            if time.perf_counter() - resumed > _SLICE_S:
                fast.write(lines)
                lines = []
                time.sleep(_SLICE_S)
                resumed = time.perf_counter()
        fast.write(lines)

    def _drain_records(self, template: Dict[str, Any]) -> None:
        """A record per line, a copy of `template` with its own time and arguments, handled
        by the handler (which may keep it)."""
        made, relative = template["created"], template["relativeCreated"]
        resumed = time.perf_counter()
        while self.pending:
            record = _new_record(logging.LogRecord)
            record.__dict__.update(template)
            _set_line(record, self.pending.popleft(), made, relative)
            self.handler.handle(record)
            if time.perf_counter() - resumed > _SLICE_S:
                time.sleep(_SLICE_S)
                resumed = time.perf_counter()

    def count_dropped(self) -> None:
        """One line not queued. Under a lock: request threads and the drain's reset would
        otherwise lose counts between a read and a write (taken only when the queue is full)."""
        with self._dropped_lock:
            self.dropped += 1

    def _report_dropped(self) -> None:
        with self._dropped_lock:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            self.handler.handle(logging.LogRecord(
                ACCESS_LOGGER.name, logging.WARNING, __file__, 0, "%d access-log lines were "
                "dropped: %d were waiting to be written (the log's stream is slower than the "
                "requests)", (dropped, self.max_pending), None))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.drain()


def _template() -> logging.LogRecord:
    """An access record but for its time and arguments: what LogRecord's constructor works out
    (process, thread, caller) is the same for every line a drain writes, so each line reuses
    it instead of constructing a record."""
    return logging.LogRecord(ACCESS_LOGGER.name, logging.INFO, __file__, 0, _MESSAGE, (), None)


class _StampOnce(logging.Formatter):
    """A Formatter that formats a second's time stamp once for all the lines in that second
    (what formatTime makes of a time depends on its whole second only, and the milliseconds)."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._stamp = time.strftime(datefmt or self.default_time_format,
                                        self.converter(record.created))
            self._second = second
        if datefmt or not self.default_msec_format:
            return self._stamp
        return self.default_msec_format % (self._stamp, record.msecs)


# The formatters whose text access_lines fills in once per drain (theirs is Formatter.format).
FORMATTERS = (logging.Formatter, _StampOnce)


def stamp_once(formatter: Optional[logging.Formatter]) -> Optional[logging.Formatter]:
    """A copy of `formatter` that formats each second's time stamp once, when it is a plain
    logging.Formatter (a subclass may format time its own way: it is kept as it is)."""
    if type(formatter) is not logging.Formatter:
        return formatter
    result = copy.copy(formatter)
    result.__class__ = _StampOnce
    return result
