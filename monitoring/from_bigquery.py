"""`python -m monitoring.from_bigquery`: a Vertex endpoint's request-response log, as the
server's request log, so `python -m monitoring` runs on it unchanged.

    .venv/bin/python -m monitoring.from_bigquery --table PROJECT.DATASET.request_response_logging \\
        --version 1796123040 --start 2026-12-01T00:00 --end 2026-12-02T00:00 --out runs/vertex_log

Vertex AI's request-response logging writes one BigQuery row per sampled request:
`logging_time`, `request_payload` (the instances, one JSON string each) and `response_payload`
(the predictions, likewise). Each instance goes through the server's own request validation
(so it is logged as the model saw it) and is written with its prediction, `--version` (the
pushed version the endpoint serves) and the row's logging time. Exit 1 names what failed.

The rows are written under a staged name and published only once the whole window is written
(renamed under the directory's publish lock, serving/log_lock.py, which monitoring holds while it
lists and reads the log, so it reads all of the window or none): a failed export leaves nothing
monitoring would read. --out may hold other windows (the window
before is what drift is measured against), but not rows of this one: an export of a window
already exported is refused, since monitoring would count its rows twice; remove the earlier
files (or choose another --out) to export it again. One export (or batch prediction) writes a
directory at a time.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import uuid
from typing import Any, List, Optional

QUERY = ("SELECT logging_time, request_payload, response_payload FROM `{table}` "
         "WHERE logging_time >= TIMESTAMP_MILLIS(@start_ms) "
         "AND logging_time < TIMESTAMP_MILLIS(@end_ms) ORDER BY logging_time")


def _prediction(text: str) -> float:
    value: Any = json.loads(text)
    while isinstance(value, (list, dict)):
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return float(value)


def export(table: str, version: int, start_ms: int, end_ms: int, out: pathlib.Path,
           client: Any = None) -> int:
    """Writes the window's logged rows into `out` as a request log; returns how many."""
    from google.cloud import bigquery

    from monitoring import logs
    from serving import batch_log, batch_output, request_log

    try:
        with batch_log.held(str(out)):
            held = logs.read(request_log.complete_files(out), logs.Window(start_ms, end_ms))
            if len(held):
                raise FileExistsError(
                    f"{out} already holds {len(held)} logged rows from "
                    f"{logs.Window(start_ms, end_ms).describe()} (an earlier export of this "
                    "window?): remove those files or choose another --out")
            return _staged(client or bigquery.Client(), table, version, start_ms, end_ms, out)
    except batch_output.OutputBusy:
        raise batch_output.OutputBusy(f"another export or batch prediction is writing {out}; "
                                      "wait for it to finish or choose another --out") from None


def _staged(client: Any, table: str, version: int, start_ms: int, end_ms: int,
            out: pathlib.Path) -> int:
    """(Holding `out`.) The window's rows, staged under a tag of this export's own, then
    published; on any failure the staged files are deleted."""
    from google.cloud import bigquery

    from serving import validation
    from serving.request_log import RequestLog, RequestLogConfig, publish, remove_staged

    config = bigquery.QueryJobConfig(query_parameters=[
        bigquery.ScalarQueryParameter("start_ms", "INT64", start_ms),
        bigquery.ScalarQueryParameter("end_ms", "INT64", end_ms)])
    moment = [0.0]
    tag = f"export-{uuid.uuid4().hex[:12]}"
    log_config = RequestLogConfig(str(out), sample_rate=1.0, staging=tag)
    log = RequestLog(log_config, clock=lambda: moment[0])
    rows = 0
    try:
        try:
            for row in client.query(QUERY.format(table=table), job_config=config).result():
                instances = [json.loads(text) for text in row["request_payload"]]
                predictions = [_prediction(text) for text in row["response_payload"]]
                columns, count = validation.feature_columns_from_instances(instances,
                                                                           len(instances))
                moment[0] = row["logging_time"].timestamp()
                log.log_columns(columns, predictions[:count], version)
                rows += count
        finally:
            log.close()
        if log.dropped:
            raise OSError(f"{log.dropped} of {rows} rows could not be written to {out}")
        publish(out, {tag}, log_config.max_total_bytes)
    finally:
        remove_staged(out, tag)  # after a failure; after publishing there is none left
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    from monitoring import logs

    parser = argparse.ArgumentParser(prog="python -m monitoring.from_bigquery",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="PROJECT.DATASET.TABLE of the log")
    parser.add_argument("--version", type=int, required=True,
                        help="the pushed version the endpoint serves")
    parser.add_argument("--start", required=True, help="ISO time (UTC unless given)")
    parser.add_argument("--end", required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="request-log directory to write (monitoring's --logs)")
    args = parser.parse_args(argv)
    try:
        rows = export(args.table, args.version, logs.parse_time(args.start),
                      logs.parse_time(args.end), args.out)
    except Exception as error:  # noqa: BLE001 - the cloud's errors are many; each is a message
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"Wrote {rows} logged rows of {args.table} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
