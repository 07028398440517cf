"""The access log's lines made from one record per drain are the handler's own text, and no
line is lost: not while the writer thread runs, not past the queue's bound (counted and said)."""
from __future__ import annotations

import io
import logging
import time
from typing import Iterator, List, Optional

import pytest

from serving import access_lines, access_log

_FORMATS = [
    ("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"),
    ("%(asctime)s %(levelname)s %(message)s", None),  # the default stamp carries milliseconds
    ("[%(name)s] {%(process)d} %(levelno)03d %% %(message)s", None),
    ("%(message)s", None),
]
# Per-line attributes other than as plain %(asctime)s / %(message)s: the per-record way.
_NOT_FILLED = ["%(created)f %(message)s", "%(asctime)-30s %(message)s",
               "%(msecs)03d %(message)s", "%(levelname)s"]
_TIMES = (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25)


def _lines(handler: logging.Handler, items: List[tuple]) -> List[str]:
    deferred = access_log.Deferred(handler)
    deferred.pending.extend(items)
    deferred.drain()
    return handler.stream.getvalue().splitlines()  # type: ignore[attr-defined]


def _handler(fmt: str, datefmt: Optional[str], stamp_once: bool) -> logging.StreamHandler:
    handler = logging.StreamHandler(io.StringIO())
    formatter = logging.Formatter(fmt, datefmt=datefmt)
    handler.setFormatter(access_log.stamp_once(formatter) if stamp_once else formatter)
    return handler


def _expected(handler: logging.Handler, created: float, args: tuple) -> str:
    record = logging.LogRecord(access_log.ACCESS_LOGGER.name, logging.INFO, "", 0,
                               "%s %s %d %.2f ms", args, None)
    record.created, record.msecs = created, (created % 1) * 1000
    return handler.format(record)


@pytest.mark.parametrize("fmt,datefmt", _FORMATS)
@pytest.mark.parametrize("stamp_once", [False, True])
def test_filled_in_lines_are_the_formatters_text(fmt: str, datefmt: Optional[str],
                                                 stamp_once: bool) -> None:
    handler = _handler(fmt, datefmt, stamp_once)
    assert access_lines.writer(handler, access_log._template(),
                               access_log.FORMATTERS) is not None
    items = [(created, "POST", "/v1/models/m:predict", 200 + number, 0.5 + number)
             for number, created in enumerate(_TIMES)]
    assert _lines(handler, items) == [_expected(handler, created, tuple(args))
                                      for created, *args in items]


@pytest.mark.parametrize("fmt", _NOT_FILLED)
def test_other_formats_go_record_by_record_with_the_same_text(fmt: str) -> None:
    handler = _handler(fmt, None, stamp_once=False)
    assert access_lines.writer(handler, access_log._template(), access_log.FORMATTERS) is None
    args = ("GET", "/v1/models/m", 404, 3.0)
    assert _lines(handler, [(_TIMES[0], *args)]) == [_expected(handler, _TIMES[0], args)]


def test_relative_created_is_per_line_too() -> None:
    handler = _handler("%(relativeCreated)d %(message)s", None, stamp_once=False)
    assert access_lines.writer(handler, access_log._template(), access_log.FORMATTERS) is None


def test_a_handler_with_a_filter_or_its_own_emit_gets_records() -> None:
    handler = _handler("%(message)s", None, stamp_once=False)
    handler.addFilter(lambda record: record.args[2] != 500)
    assert access_lines.writer(handler, access_log._template(), access_log.FORMATTERS) is None
    assert _lines(handler, [(_TIMES[0], "GET", "/a", 500, 1.0),
                            (_TIMES[1], "GET", "/b", 200, 1.0)]) == ["GET /b 200 1.00 ms"]

    class Own(logging.StreamHandler):
        def emit(self, record: logging.LogRecord) -> None:
            self.stream.write("own\n")

    own = Own(io.StringIO())
    assert access_lines.writer(own, access_log._template(), access_log.FORMATTERS) is None
    assert _lines(own, [(_TIMES[0], "GET", "/a", 200, 1.0)]) == ["own"]


@pytest.fixture()
def at_info(monkeypatch) -> Iterator[None]:
    """The access logger at INFO, as the server's logging setup has it, and no Deferred."""
    monkeypatch.setattr(access_log, "_deferred", None)
    level = access_log.ACCESS_LOGGER.level
    access_log.ACCESS_LOGGER.setLevel(logging.INFO)
    yield
    access_log.ACCESS_LOGGER.setLevel(level)


def test_no_line_is_lost_while_the_writer_thread_drains(at_info: None, monkeypatch) -> None:
    """Requests queue lines while the thread drains every few milliseconds: every line comes
    out once, in order."""
    handler = _handler("%(message)s", None, stamp_once=True)
    deferred = access_log.Deferred(handler, interval=0.002)
    deferred.install()
    count = 20_000
    try:
        for number in range(count):
            access_log.line("GET", f"/v1/models/m/versions/{number}", 200, 0.5)
            if number % 1000 == 0:
                time.sleep(0.001)  # let drains run between the requests' lines
    finally:
        monkeypatch.setattr(access_log, "_deferred", None)
        deferred.close()
    assert handler.stream.getvalue().splitlines() == [  # type: ignore[attr-defined]
        f"GET /v1/models/m/versions/{number} 200 0.50 ms" for number in range(count)]


def test_lines_past_the_bound_are_counted_and_said(at_info: None, monkeypatch) -> None:
    handler = _handler("%(levelname)s %(message)s", None, stamp_once=False)
    deferred = access_log.Deferred(handler, max_pending=3)
    monkeypatch.setattr(access_log, "_deferred", deferred)
    for number in range(5):
        access_log.line("GET", f"/{number}", 200, 1.0)
    assert len(deferred.pending) == 3 and deferred.dropped == 2
    deferred.drain()
    lines = handler.stream.getvalue().splitlines()  # type: ignore[attr-defined]
    assert lines[:3] == [f"INFO GET /{number} 200 1.00 ms" for number in range(3)]
    assert lines[3] == ("WARNING 2 access-log lines were dropped: 3 were waiting to be "
                        "written (the log's stream is slower than the requests)")
    assert deferred.dropped == 0 and len(lines) == 4


def test_the_servers_handler_gets_filled_in_lines() -> None:
    """The server's setup (root format, stamp_once, BufferedLogHandler) takes the fast way."""
    import os

    from serving.server import BufferedLogHandler

    read, write = os.pipe()
    try:
        handler = BufferedLogHandler(write)
        handler.setFormatter(access_log.stamp_once(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")))
        found = access_lines.writer(handler, access_log._template(), access_log.FORMATTERS)
        assert isinstance(found, access_lines.LineWriter)
        deferred = access_log.Deferred(handler)
        deferred.pending.append((_TIMES[0], "POST", "/p", 200, 1.0))
        deferred.drain()  # and hands the buffer to the file (write_out)
        text = os.read(read, 4096).decode()
        assert text.endswith(" INFO POST /p 200 1.00 ms\n") and text.count("\n") == 1
    finally:
        handler.stream.close()
        os.close(read)
        os.close(write)
