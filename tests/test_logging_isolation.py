"""An entry point's logging set-up, run in-process by one test, must not leak into the next
(tests/conftest.py puts the root logger back): a handler on a closed captured stream prints
"--- Logging error ---" on every later log line. The two tests run in this order (one file)."""
import logging
import sys

from common import logs


LEVEL_BEFORE = []


def test_an_entry_point_points_the_root_logger_at_this_test_s_stderr() -> None:
    LEVEL_BEFORE.append(logging.getLogger().level)
    logs.setup()
    streams = [getattr(h, "stream", None) for h in logging.getLogger().handlers]
    assert sys.stderr in streams
    assert logging.getLogger().level == logging.INFO


def test_the_next_test_finds_no_handler_on_a_closed_stream() -> None:
    root = logging.getLogger()
    left = [h for h in root.handlers if type(h) is logging.StreamHandler]
    assert not [h for h in left if getattr(h.stream, "closed", False)]
    assert not [h for h in left if h.stream is not sys.__stderr__ and h.stream is not sys.stderr]
    assert LEVEL_BEFORE and root.level == LEVEL_BEFORE[0]
