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
