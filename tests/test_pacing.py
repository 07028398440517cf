"""The background threads' pacer (serving/pacing.py): after a burst of work it sleeps, and only
then; the loader's profile hook and the request log's writer both use it."""
from __future__ import annotations

import time

from serving import pacing
from serving.request_log import RequestLog, RequestLogConfig


def test_a_pace_sleeps_only_after_its_burst():
    pace = pacing.Pace(burst_s=0.05, pause_s=0.001)
    pace()  # right after it started: no burst has passed
    assert pace.pauses == 0
    started = time.perf_counter()
    while time.perf_counter() - started <= 0.05:  # a burst of work
        pass
    pace()
    assert pace.pauses == 1
    pace()  # the burst began again at the pause
    assert pace.pauses == 1


def test_the_request_logs_writer_is_paced(tmp_path):
    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=1.0))
    assert isinstance(log._pace, pacing.Pace)
    log._pace.burst_s = 0.0  # every record is a burst: the writer pauses after each
    log._pace.pause_s = 0.0
    for _ in range(5):
        log.log([{"is_male": "True", "plurality": "Single(1)", "mother_age": 30.0,
                  "gestation_weeks": 39.0}], [7.0], version=1)
    log.close()
    assert log.written == 5 and log._pace.pauses >= 5


def test_a_writer_half_a_queue_behind_writes_without_pausing(tmp_path):
    """Pausing is for a writer that keeps up; one with half its queue waiting (batch prediction
    logs every row) writes on without pauses rather than fill the queue and drop."""
    log = RequestLog(RequestLogConfig(str(tmp_path), sample_rate=1.0, queue_size=10,
                                      drain_seconds=600))  # drains only when closed
    log._pace.burst_s, log._pace.pause_s = 0.0, 0.0  # due after every record
    for _ in range(8):
        log.log([{"is_male": "True", "plurality": "Single(1)", "mother_age": 30.0,
                  "gestation_weeks": 39.0}], [7.0], version=1)
    log.close()
    # After each of the 8 records, 7, 6, ... 0 wait: it pauses only once fewer than 5 do.
    assert log.written == 8 and log.dropped == 0 and log._pace.pauses == 5
