"""Deferred access-log lines: the request only queues a tuple; the lines come out as the
logger's own records would, with the request's time, in order."""
from __future__ import annotations

import io
import logging
from typing import Iterator

import pytest

from serving import access_log


@pytest.fixture()
def deferred(monkeypatch) -> Iterator[access_log.Deferred]:
    """A Deferred installed without its thread (lines stay queued), writing to a StringIO,
    with the access logger at INFO as the server's logging setup has it."""
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           datefmt="%H:%M:%S"))
    result = access_log.Deferred(handler)
    monkeypatch.setattr(access_log, "_deferred", result)
    level = access_log.ACCESS_LOGGER.level
    access_log.ACCESS_LOGGER.setLevel(logging.INFO)
    yield result
    access_log.ACCESS_LOGGER.setLevel(level)


def test_deferred_lines_are_the_records_the_logger_would_write(
        deferred: access_log.Deferred) -> None:
    handler = deferred.handler
    stream = handler.stream  # type: ignore[attr-defined]
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


def test_nothing_is_queued_for_a_logger_set_above_info(deferred: access_log.Deferred) -> None:
    access_log.ACCESS_LOGGER.setLevel(logging.WARNING)
    access_log.line("GET", "/v1/models/m", 200, 1.0)
    assert not deferred.pending
    access_log.ACCESS_LOGGER.setLevel(logging.INFO)
    access_log.line("GET", "/v1/models/m", 200, 1.0)
    assert len(deferred.pending) == 1


def test_a_seconds_stamp_formatted_once_is_the_formatters_own() -> None:
    """Across second boundaries, with and without a date format (the default one carries the
    milliseconds), and for times out of order."""
    for datefmt in ("%H:%M:%S", None):
        plain = logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt=datefmt)
        once = access_log.stamp_once(plain)
        assert type(once) is not logging.Formatter and once is not plain
        for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.0,
                        1_700_000_001.5, 1_700_000_000.25, 1_700_003_600.75):
            record = logging.LogRecord("x", logging.INFO, "", 0, "m %d", (1,), None)
            record.created, record.msecs = created, (created % 1) * 1000
            assert once.format(record) == plain.format(record), (datefmt, created)


def test_a_formatter_of_its_own_is_kept() -> None:
    class Own(logging.Formatter):
        pass

    own = Own("%(message)s")
    assert access_log.stamp_once(own) is own and access_log.stamp_once(None) is None


_QUEUE_AND_EXIT = """
import sys
from common import logs
from serving import access_log
from serving.server import buffer_access_log

logs.setup(False)
buffer_access_log(interval=3600)  # the writer thread would not write them before the exit
for number in range(1000):
    access_log.line("GET", f"/v1/models/m/versions/{number}", 200, 0.5)
sys.exit(0)
"""


def test_lines_still_queued_at_exit_are_written() -> None:
    """The server's way out (sys.exit on SIGTERM runs the exit handlers) writes every line
    still queued or buffered, in order, in the root handlers' format."""
    import os
    import re
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _QUEUE_AND_EXIT], capture_output=True,
                          text=True, timeout=120, cwd=os.getcwd(),
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if " GET /v1/models/m/" in line]
    assert [line.split(" ")[3] for line in lines] == [
        f"/v1/models/m/versions/{number}" for number in range(1000)]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d INFO GET /v1/models/m/versions/\d+ 200 0.50 ms",
                            line) for line in lines), lines[:3]


def test_every_line_dropped_by_concurrent_requests_is_counted(
        deferred: access_log.Deferred) -> None:
    """Past `max_pending`, lines dropped by many request threads at once, while the drain
    reports and resets the count, all reach the warnings: none is lost between a thread's
    read and write of the count."""
    import re
    import sys
    import threading

    deferred.max_pending = 0  # every line is dropped
    threads, per_thread = 8, 5_000
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        workers = [threading.Thread(target=lambda: [access_log.line("GET", "/", 200, 1.0)
                                                    for _ in range(per_thread)])
                   for _ in range(threads)]
        for worker in workers:
            worker.start()
        while any(worker.is_alive() for worker in workers):
            deferred.drain()
        for worker in workers:
            worker.join()
        deferred.drain()
    finally:
        sys.setswitchinterval(interval)
    stream = deferred.handler.stream  # type: ignore[attr-defined]
    reported = [int(count) for count in re.findall(r"(\d+) access-log lines were dropped",
                                                   stream.getvalue())]
    assert sum(reported) == threads * per_thread and deferred.dropped == 0
