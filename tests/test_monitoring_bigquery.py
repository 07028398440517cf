"""A Vertex endpoint's request-response log in BigQuery becomes the request log monitoring
reads (BigQuery faked at the client call: it answers the query's window from rows in memory)."""
from __future__ import annotations

import datetime
import json

from google.cloud import bigquery

from monitoring import from_bigquery, logs
from serving import request_log

UTC = datetime.timezone.utc
INSTANCE = {"is_male": "False", "plurality": "Single(1)", "mother_age": 29.0,
            "gestation_weeks": 40.0}


def _row(minute: int, weights):
    return {"logging_time": datetime.datetime(2026, 12, 1, 10, minute, tzinfo=UTC),
            "request_payload": [json.dumps({**INSTANCE, "mother_age": 20.0 + minute})
                                for _ in weights],
            "response_payload": [json.dumps([w]) for w in weights]}


class FakeBigQuery:
    rows = [_row(0, [7.0]), _row(5, [6.5, 6.0]), _row(30, [8.0])]
    statements = []

    def query(self, statement, job_config):
        FakeBigQuery.statements.append(statement)
        bounds = {p.name: p.value for p in job_config.query_parameters}
        kept = [r for r in self.rows
                if bounds["start_ms"] <= r["logging_time"].timestamp() * 1000 < bounds["end_ms"]]
        return type("Job", (), {"result": lambda _self: kept})()


def test_the_window_of_the_bigquery_log_becomes_a_request_log(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bigquery, "Client", FakeBigQuery)
    out = tmp_path / "log"
    code = from_bigquery.main(["--table", "p.d.request_response_logging", "--version", "7",
                               "--start", "2026-12-01T10:00", "--end", "2026-12-01T10:10",
                               "--out", str(out)])
    assert code == 0 and "Wrote 3 logged rows" in capsys.readouterr().out
    assert "`p.d.request_response_logging`" in FakeBigQuery.statements[0]
    frame = logs.read(request_log.complete_files(out)).sort_values(request_log.TIME_KEY)
    assert list(frame["mother_age"]) == [20, 25, 25]
    assert list(frame[request_log.PREDICTION_KEY]) == [7.0, 6.5, 6.0]
    assert set(frame[request_log.VERSION_KEY]) == {7}
    start = datetime.datetime(2026, 12, 1, 10, 5, tzinfo=UTC).timestamp() * 1000
    assert list(frame[request_log.TIME_KEY])[1:] == [start, start]


def _export(out, start: str, end: str) -> int:
    return from_bigquery.main(["--table", "p.d.t", "--version", "7", "--start", start,
                               "--end", end, "--out", str(out)])


def test_a_failed_export_leaves_nothing_monitoring_would_read(tmp_path, monkeypatch, capsys):
    impossible = {**_row(6, [7.0]), "request_payload": [json.dumps({**INSTANCE,
                                                                    "mother_age": 99.0})]}
    monkeypatch.setattr(FakeBigQuery, "rows", FakeBigQuery.rows[:2] + [impossible])
    monkeypatch.setattr(bigquery, "Client", FakeBigQuery)
    out = tmp_path / "log"
    assert _export(out, "2026-12-01T10:00", "2026-12-01T10:10") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mother_age: 99.0 is outside the valid range" in err
    assert request_log.complete_files(out) == [] and request_log.staged_files(out) == []
    assert request_log.open_files(out) == []


def test_an_exported_window_is_not_exported_again_into_the_same_log(tmp_path, monkeypatch,
                                                                     capsys):
    monkeypatch.setattr(bigquery, "Client", FakeBigQuery)
    out = tmp_path / "log"
    assert _export(out, "2026-12-01T10:00", "2026-12-01T10:10") == 0
    capsys.readouterr()
    assert _export(out, "2026-12-01T10:05", "2026-12-01T10:20") == 1  # overlaps the first
    err = capsys.readouterr().err
    assert err == (f"error: FileExistsError: {out} already holds 2 logged rows from "
                   "2026-12-01 10:05:00 UTC to 2026-12-01 10:20:00 UTC (an earlier export of "
                   "this window?): remove those files or choose another --out\n")
    assert len(logs.read(request_log.complete_files(out))) == 3
    # The next window goes beside it: drift is measured against the window before.
    assert _export(out, "2026-12-01T10:10", "2026-12-01T11:00") == 0
    assert len(logs.read(request_log.complete_files(out))) == 4


def test_an_export_into_a_log_another_export_is_writing_is_refused(tmp_path, monkeypatch,
                                                                   capsys):
    from serving import batch_log, batch_output

    monkeypatch.setattr(bigquery, "Client", FakeBigQuery)
    out = tmp_path / "log"
    with batch_output.held(str(out / batch_log.LOCK_NAME), str(out)):
        assert _export(out, "2026-12-01T10:00", "2026-12-01T10:10") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"another export or batch prediction is writing {out}" in err
    assert request_log.complete_files(out) == []



def test_monitoring_reads_an_exported_window_whole_or_waits_for_its_publish(tmp_path,
                                                                          monkeypatch):
    """Publishing renames the staged files one at a time under the directory's publish lock;
    monitoring lists and reads under it, so it never counts part of the window."""
    import fcntl
    import os
    import threading

    import pytest

    from serving import log_lock

    out, renamed, seen, config = tmp_path / "log", os.replace, [], request_log.RequestLogConfig
    monkeypatch.setattr(FakeBigQuery, "rows", [_row(0, [7.0]), _row(5, [6.5, 6.0])])
    monkeypatch.setattr(request_log, "RequestLogConfig",  # a file per request: two files
                        lambda *args, **kwargs: config(*args, **kwargs, max_file_bytes=1))

    def one_rename(source, target):  # a monitoring run at each of publish's renames is refused
        renamed(source, target)
        if request_log.STAGED in str(source) and not str(source).endswith(request_log.PARTIAL):
            with pytest.raises(TimeoutError, match=f"publishing its files into {out} for over"):
                logs.read_directory(out, wait_seconds=0)
            seen.append(len(request_log.complete_files(out)))

    monkeypatch.setattr(os, "replace", one_rename)
    assert from_bigquery.export("p.d.t", 7, 0, 2 ** 62, out, FakeBigQuery()) == 3
    monkeypatch.setattr(os, "replace", renamed)
    assert seen == [1, 2]  # at the first rename a reader would have counted part of the window
    read, listed = logs.read, []

    def read_meanwhile(files, gone=None):  # the lock is held while the log is read
        with open(out / log_lock.LOCK_NAME) as handle, pytest.raises(BlockingIOError):
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return read(files, gone=gone)

    monkeypatch.setattr(logs, "read", read_meanwhile)
    with log_lock.publishing(out):  # a publish under way: the reader waits for it to end
        reader = threading.Thread(target=lambda: listed.append(logs.read_directory(out)))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive() and not listed
    reader.join(30)
    assert len(listed[0][2]) == 3
