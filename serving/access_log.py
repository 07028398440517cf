"""One access-log line per request, formatted and written by a background thread.

Why: building a LogRecord, formatting its time and message and writing it cost a single-row
request several percent of its latency on the thread that answers requests. `line()` keeps the
request's share to one append of a tuple (its time, method, path, status, latency); the server
(serving/server.py) installs `Deferred`, whose thread turns the tuples into ordinary records of
the `babyweight.serving.access` logger, with the root handlers' format, a few times a second,
in short slices between which the requests have the interpreter. Without it (a test's app),
`line()` logs at once.
"""
from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
from typing import Deque, Optional, Tuple

ACCESS_LOGGER = logging.getLogger("babyweight.serving.access")
_MESSAGE = "%s %s %d %.2f ms"
_SLICE_S = 0.0002  # the writer gives the interpreter back at least this often (seconds)

_deferred: Optional["Deferred"] = None


def line(method: str, path: str, status: int, millis: float) -> None:
    """Logs one request's line (deferred when the server installed `Deferred`)."""
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
            resumed = time.perf_counter()
            while self.pending:
                created, *args = self.pending.popleft()
                record = logging.LogRecord(ACCESS_LOGGER.name, logging.INFO, __file__, 0,
                                           _MESSAGE, tuple(args), None)
                record.created, record.msecs = created, (created % 1) * 1000
                self.handler.handle(record)
                if time.perf_counter() - resumed > _SLICE_S:
                    time.sleep(_SLICE_S)
                    resumed = time.perf_counter()
            self.handler.flush()

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            self.drain()
