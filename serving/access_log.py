"""One access-log line per request, formatted and written by a background thread.

Why: building a LogRecord, formatting its time and message and writing it cost a single-row
request several percent of its latency on the thread that answers requests. `line()` keeps the
request's share to one append of a tuple (its time, method, path, status, latency); the server
(serving/server.py) installs `Deferred`, whose thread turns the tuples into ordinary records of
the `babyweight.serving.access` logger, with the root handlers' format, a few times a second,
in short slices between which the requests have the interpreter. Each record is a copy of one
made per drain with its own time and arguments, and each second's time stamp is formatted once
(`stamp_once`): that thread holds the interpreter the requests need too. Without it (a test's app),
`line()` logs at once.
"""
from __future__ import annotations

import atexit
import collections
import copy
import logging
import threading
import time
from typing import Any, Deque, Dict, Optional, Tuple

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
    else:
        deferred.pending.append((time.time(), method, path, status, millis))


class Deferred:
    """The thread that formats and hands over queued lines every `interval` seconds."""

    def __init__(self, handler: logging.Handler, interval: float = 0.2,
                 max_pending: int = 100_000) -> None:
        self.handler = handler
        self.pending: Deque[Tuple[float, str, str, int, float]] = collections.deque(
            maxlen=max_pending)  # past it the oldest lines go: a log never blocks a request
        self._interval = interval
        self._lock = threading.Lock()

    def install(self) -> None:
        global _deferred
        _deferred = self
        threading.Thread(target=self._run, name="access-log", daemon=True).start()
        atexit.register(self.drain)

    def drain(self) -> None:
        """Writes every queued line, in slices."""
        with self._lock:
            template = _template()
            made, relative = template["created"], template["relativeCreated"]
            resumed = time.perf_counter()
            while self.pending:
                created, *args = self.pending.popleft()
                record = _new_record(logging.LogRecord)
                record.__dict__.update(template)
                record.args = tuple(args)
                record.created, record.msecs = created, (created % 1) * 1000
                record.relativeCreated = relative + (created - made) * 1000
                self.handler.handle(record)
                if time.perf_counter() - resumed > _SLICE_S:
                    time.sleep(_SLICE_S)
                    resumed = time.perf_counter()
            self.handler.flush()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            self.drain()


def _template() -> Dict[str, Any]:
    """An access record's attributes but its time and arguments: what LogRecord's constructor
    works out (process, thread, caller) is the same for every line a drain writes, so each line
    copies it instead of constructing a record."""
    return logging.LogRecord(ACCESS_LOGGER.name, logging.INFO, __file__, 0, _MESSAGE, (),
                             None).__dict__


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


def stamp_once(formatter: Optional[logging.Formatter]) -> Optional[logging.Formatter]:
    """A copy of `formatter` that formats each second's time stamp once, when it is a plain
    logging.Formatter (a subclass may format time its own way: it is kept as it is)."""
    if type(formatter) is not logging.Formatter:
        return formatter
    result = copy.copy(formatter)
    result.__class__ = _StampOnce
    return result
