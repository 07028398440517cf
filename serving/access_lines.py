"""The access log's lines as its handler would write them, made without a record per line.

Why: the thread that writes the access log shares the interpreter with the requests, and for
each line a Formatter's `format` (its message, its time stamp, its whole format string against
the record's attributes) and the handler's `handle` (filters, lock, emit, write) cost that
thread more than the request's own share. Within one drain all of a line's attributes but its
time and its message are the same, so for a stream handler with a %-style Formatter the format
string is filled in once per drain with everything else, and each line is that text with its
time stamp and message put in; a slice's lines go to the stream in one write. The text is the
handler's own, character for character (tests/test_access_lines.py); for any other handler or
formatter `writer` answers None and the lines go through `handle` one by one.
"""
from __future__ import annotations

import logging
import re
from typing import List, Optional, Tuple, Type

# What a line changes: a format string using these other than as %(asctime)s and %(message)s
# (or at all) is not filled in once.
_PER_LINE = ("created", "msecs", "relativeCreated", "args", "asctime", "message")
_FIELD = re.compile(r"%\((\w+)\)([#0 +\-]*\*?\d*(?:\.\d+)?[a-zA-Z%])")
_STAMP, _MESSAGE = "\0stamp\0", "\0message\0"


class LineWriter:
    """Makes and writes one drain's lines; see the module docstring."""

    def __init__(self, handler: logging.StreamHandler, formatter: logging.Formatter,
                 text: str, record: logging.LogRecord) -> None:
        self._handler = handler
        self._formatter = formatter
        self._text = text  # the line, with {0} for the time stamp and {1} for the message
        self._record = record
        self._timed = "{0}" in text

    def line(self, record: logging.LogRecord) -> str:
        """`record` (the drain's one, its time and arguments set) as the handler writes it."""
        formatter = self._formatter
        stamp = formatter.formatTime(record, formatter.datefmt) if self._timed else ""
        return self._text.format(stamp, record.getMessage())

    def write(self, lines: List[str]) -> None:
        if not lines:
            return
        handler = self._handler
        terminator = handler.terminator
        with handler.lock:  # type: ignore[union-attr]
            try:
                handler.stream.write(terminator.join(lines) + terminator)
            except Exception:  # noqa: BLE001 - as StreamHandler.emit: reported, not raised
                handler.handleError(self._record)


def writer(handler: logging.Handler, record: logging.LogRecord,
           formatters: Tuple[Type[logging.Formatter], ...]) -> Optional[LineWriter]:
    """A LineWriter for `handler` and the drain's `record`, or None when `handler` is not a
    filterless StreamHandler whose %-style Formatter (of one of `formatters`, whose `format`
    is logging.Formatter's) can be filled in once."""
    if (not isinstance(handler, logging.StreamHandler) or handler.filters
            or type(handler).emit is not logging.StreamHandler.emit
            or type(handler).format is not logging.Handler.format):
        return None
    formatter = handler.formatter or logging.Formatter()
    if (type(formatter) not in formatters
            or type(formatter._style) is not logging.PercentStyle):  # noqa: SLF001
        return None
    fmt = formatter._fmt or logging.PercentStyle.default_format  # noqa: SLF001
    for name, conversion in _FIELD.findall(fmt):
        if name in _PER_LINE and not (name in ("asctime", "message")
                                      and conversion == "s"):
            return None
    if "%(message)s" not in fmt:
        return None
    marked = fmt.replace("%(asctime)s", _STAMP).replace("%(message)s", _MESSAGE)
    try:
        filled = marked % record.__dict__
    except (KeyError, TypeError, ValueError):
        return None
    text = (filled.replace("{", "{{").replace("}", "}}")
            .replace(_STAMP, "{0}").replace(_MESSAGE, "{1}"))
    return LineWriter(handler, formatter, text, record)
