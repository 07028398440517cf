"""Deferred access-log lines: the request only queues a tuple; the lines come out as the
logger's own records would, with the request's time, in order."""
from __future__ import annotations

import io
import logging

from serving import access_log


def test_deferred_lines_are_the_records_the_logger_would_write(monkeypatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           datefmt="%H:%M:%S"))
    deferred = access_log.Deferred(handler)
    monkeypatch.setattr(access_log, "_deferred", deferred)  # installed, without its thread
    access_log.line("POST", "/v1/models/m:predict", 200, 0.8123)
    access_log.line("GET", "/v1/models/m", 404, 12.0)
    assert stream.getvalue() == "" and len(deferred.pending) == 2  # nothing formatted yet
    created = deferred.pending[0][0]
    deferred.drain()
    expected = logging.LogRecord(access_log.ACCESS_LOGGER.name, logging.INFO, "", 0,
                                 "%s %s %d %.2f ms", ("POST", "/v1/models/m:predict", 200,
                                                      0.8123), None)
    expected.created = created
    first, second = stream.getvalue().splitlines()
    assert first == handler.format(expected)
    assert first.endswith("INFO babyweight.serving.access POST /v1/models/m:predict 200 0.81 ms")
    assert second.endswith("GET /v1/models/m 404 12.00 ms") and not deferred.pending
