"""Records in request-log files still open (`.partial`) are in no complete file: monitoring
tells which open files may hold records from before its window's end, so none are lost
between windows unsaid. Files are written with the request log's own writer and encoders at
chosen times, never by waiting for a rotation."""
from __future__ import annotations

import pathlib

import numpy as np

from monitoring import cli, logs
from serving import request_log
from serving.request_log import RequestLog, RequestLogConfig

ROW = {"is_male": "True", "plurality": "Single(1)", "mother_age": 30, "gestation_weeks": 39}
AT = 1_800_000_000  # seconds: the files' and records' time
END_MS = (AT + 60) * 1000


def _open_file(directory: pathlib.Path, opened_s: float, times_ms, sequence: int,
               torn: bool = False) -> pathlib.Path:
    """An open file as the writer leaves it, its last record possibly half written."""
    directory.mkdir(parents=True, exist_ok=True)
    data = request_log.framed([request_log.encode(ROW, 7.0, 3, t) for t in times_ms])
    path = pathlib.Path(str(request_log.file_stem(directory, opened_s, 1, sequence))
                        + request_log.SUFFIX + request_log.PARTIAL)
    path.write_bytes(data[:-5] if torn else data)
    return path


def test_a_file_is_named_by_the_log_clock_s_time_of_opening(tmp_path):
    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=1.0), clock=lambda: AT + 0.25)
    log.log([ROW], [7.0], 3)
    log.close()
    (path,) = request_log.complete_files(tmp_path)
    assert request_log.opened_ms(path) == (AT * 1000 + 250)
    assert request_log.open_files(tmp_path) == []
    assert request_log.opened_ms(tmp_path / "notes.txt") is None


def test_open_files_that_may_hold_records_before_the_end_are_told(tmp_path):
    d = tmp_path
    before = _open_file(d, AT + 30, [(AT + 30) * 1000], 1)  # opened before the end
    # Opened after the end, but holding a record queued before it (written whole).
    queued = _open_file(d, AT + 61, [END_MS - 200, END_MS + 1000], 2)
    after = _open_file(d, AT + 61, [END_MS, END_MS + 1000], 3, torn=True)
    empty = _open_file(d, AT + 90, [], 4)
    completed = _open_file(d, AT + 10, [(AT + 10) * 1000], 5)
    complete = completed.with_name(completed.name[:-len(request_log.PARTIAL)])
    gone = pathlib.Path(str(request_log.file_stem(d, AT + 70, 1, 9)) + request_log.SUFFIX
                        + request_log.PARTIAL)  # listed, then completed after the listing
    opened = request_log.open_files(d)
    assert opened == [completed, before, queued, after, empty]
    completed.rename(complete)  # completed between the listings: read as complete
    held = logs.open_before(opened + [gone], [complete], END_MS)
    assert held == [before, queued, gone]
    assert logs.open_before(opened, [complete], (AT + 20) * 1000) == []
    # A written record is read even when the one after it is half written.
    assert list(logs._written_times(after)) == [END_MS]
    assert np.array_equal(logs._written_times(empty), [])


def test_the_console_and_the_summary_say_how_many_open_files_were_not_read():
    lines = cli.outcome_lines([], {}, None, open_files=2)
    assert lines == [f"  -- {cli.unread_text(2)}"]
    assert cli.unread_text(2).startswith("2 request-log files still open (.partial) may hold "
                                         "records from before the window's end")
    assert "pass an earlier --end" in cli.unread_text(1) and cli.unread_text(0) is None
    summary = cli.summary([], {}, 3, "w", {3: 10}, None, open_files=2)
    assert summary["open_files"] == 2 and summary["open_files_not_read"] == cli.unread_text(2)
    assert cli.summary([], {}, 3, "w", {3: 10})["open_files_not_read"] is None
    assert cli.outcome_lines([], {}, None) == []
