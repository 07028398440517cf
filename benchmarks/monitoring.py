"""What monitoring costs: the request log's cost on the serving path, and the monitor's speed.

1. Request logging: two servers over the same model, logging off and logging on at the default
   sample rate, measured in the same run at 1 and 32 clients, in alternating rounds (which
   server goes first alternates too; the median of the rounds' p50 and p99 is reported). The
   target is judged on the rounds' paired changes (benchmarks/paired.py): met or not only
   when their median's interval is wholly on one side of +5%.
2. The monitor: logged requests per second analyzed at 100k and 1M logged rows (reading the
   TFRecord log, TFDV statistics of the window and of the previous one, skew, drift and the
   prediction comparison); the lineage lookup and the eval predictions, once per version, are
   not included.

Only the on/off serving comparison (prints its table, writes nothing; results/ and the README
are written by a full run):

    .venv/bin/python -m benchmarks.monitoring --serving-only --requests 4000
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Dict, List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from benchmarks import harness, paired  # noqa: E402
from benchmarks.harness import markdown_table, publish  # noqa: E402
from benchmarks.serving_clients import (INSTANCE, request_bytes,  # noqa: E402
                                        rest_connect, run_level, start_server, wait_healthy)
from modules import features  # noqa: E402
from common.config import setting  # noqa: E402
from common.net import free_port  # noqa: E402
from serving.settings import ModelConfig, RequestLogSettings  # noqa: E402

DEFAULT_RATE = RequestLogSettings.request_log_sample_rate


@dataclasses.dataclass(frozen=True)
class MonitoringBenchmarkConfig(harness.ServedModel):
    """The served model, the load on it, and the log sizes the monitor analyzes."""

    clients: str = setting("1,32", "Concurrency levels, comma-separated.")
    requests: int = setting(2000, "Requests per level/round.")
    rounds: int = setting(
        9, "Alternating rounds of the log off and on (medians; with 9 the rounds' "
        "second-lowest and second-highest change bound the median change, 96 in 100).")
    sizes: str = setting("100000,1000000", "Logged rows to analyze.")
    serving_only: bool = setting(
        False, "only the request log's on/off serving comparison (not the monitor's speed); "
        "prints the table and writes nothing")

    def __post_init__(self) -> None:
        self.levels(), self.log_sizes()  # malformed lists stop here, before any server

    def levels(self) -> List[int]:
        return harness.counts(self.clients, "--clients")

    def log_sizes(self) -> List[int]:
        return [] if self.serving_only else harness.counts(self.sizes, "--sizes")


def logging_overhead(model_dir: str, clients: List[int], requests: int, rounds: int
                     ) -> List[Dict[str, object]]:
    work = pathlib.Path(tempfile.mkdtemp())
    servers = {}
    for name, extra in (("off", ()), ("on", ("--request-log-dir", str(work / "log")))):
        port = free_port()
        servers[name] = (port, start_server(model_dir, port, work / f"{name}.log",
                                            ("--no-access-log", *extra)))
    path = f"/v1/models/{ModelConfig().model_name}:predict"
    body = json.dumps({"instances": [INSTANCE]}).encode()
    results: Dict[tuple, List[Dict[str, float]]] = {}
    try:
        for port, process in servers.values():
            wait_healthy(port, process)
        for round_ in range(rounds):
            for count in clients:
                # Either server first in turn: neither always follows the other's load.
                for name in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                    port = servers[name][0]
                    connect = rest_connect(port, request_bytes(path, body))
                    results.setdefault((name, count), []).append(
                        run_level(connect, count, requests, 60.0))
    finally:
        for _, process in servers.values():
            process.terminate()
            process.wait(timeout=60)
    records = []
    for (name, count), runs in results.items():
        records.append({"setup": f"request log {name}", "clients": count,
                        "requests": sum(r["requests"] for r in runs),
                        "errors": sum(r["errors"] for r in runs),
                        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
                        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
                        "rounds_p50_ms": [r["p50_ms"] for r in runs],
                        "rounds_p99_ms": [r["p99_ms"] for r in runs]})
    return records


def _synthetic_log(directory: pathlib.Path, rows: int, seed: int) -> None:
    import tensorflow as tf

    from serving import request_log

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    start = 1_800_000_000_000
    with tf.io.TFRecordWriter(str(directory / f"requests-{seed}{request_log.SUFFIX}")) as out:
        for index in range(rows):
            instance = {"is_male": features.IS_MALE.vocabulary[index % 3],
                        "plurality": features.PLURALITY_NAMES[int(rng.random() < 0.03)],
                        "mother_age": int(rng.normal(28, 6)) % 40 + 15,
                        "gestation_weeks": int(rng.normal(39, 2)) % 25 + 20}
            out.write(request_log.encode(instance, 7.2, 1, start + index))


def monitor_speed(rows: int, work: pathlib.Path) -> Dict[str, object]:
    from monitoring import compare, logs
    from serving import request_log

    _synthetic_log(work / str(rows), rows, seed=rows)
    reference = compare.feature_statistics(logs.read(request_log.complete_files(
        work / str(rows)))[: min(rows, 100_000)])
    started = time.perf_counter()
    frame = logs.read(request_log.complete_files(work / str(rows)))
    middle = int(frame[request_log.TIME_KEY].median())
    current, previous = frame[frame[request_log.TIME_KEY] >= middle], frame[
        frame[request_log.TIME_KEY] < middle]
    schema = compare.monitoring_schema()
    served = compare.feature_statistics(current)
    found = compare.skew(reference, served, schema)
    found += compare.drift(served, compare.feature_statistics(previous), schema)
    found += compare.predictions(compare.prediction_statistics(
        previous[request_log.PREDICTION_KEY]), compare.prediction_statistics(
        current[request_log.PREDICTION_KEY]))
    seconds = time.perf_counter() - started
    return {"setup": "monitor", "rows": rows, "seconds": seconds,
            "rows_per_second": rows / seconds, "distances": len(found)}


def verdicts(serving: List[Dict[str, object]]) -> List[str]:
    """Per level, the log's cost at p50 and p99 from the rounds' paired changes."""
    notes = []
    by = {(r["setup"], r["clients"]): r for r in serving}
    for count in sorted({r["clients"] for r in serving}):
        off, on = by[("request log off", count)], by[("request log on", count)]
        for key in ("p50_ms", "p99_ms"):
            changes = paired.percent_changes(on[f"rounds_{key}"], off[f"rounds_{key}"])
            notes.append(f"- {key[:3]} at {count} client(s) with the log on (sample rate "
                         f"{DEFAULT_RATE:g}): {paired.verdict(changes, 5)}")
    return notes


def main(argv: Optional[List[str]] = None) -> int:
    config, output = harness.parse("monitoring", __doc__, argv, MonitoringBenchmarkConfig)
    try:
        config.newest_version()
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    load = [os.getloadavg()[0]]
    serving = logging_overhead(config.model_dir, config.levels(), config.requests, config.rounds)
    load.append(os.getloadavg()[0])
    work = pathlib.Path(tempfile.mkdtemp())
    speed = [monitor_speed(rows, work) for rows in config.log_sizes()]
    rows = [[r["setup"], r["clients"], r["requests"], r["errors"], r["p50_ms"], r["p99_ms"]]
            for r in serving]
    table = markdown_table(["setup", "clients", "requests", "errors", "p50 ms", "p99 ms"], rows)
    notes = verdicts(serving)
    speed_table = markdown_table(
        ["logged rows", "seconds", "rows analyzed/s", "distances"],
        [[s["rows"], s["seconds"], s["rows_per_second"], s["distances"]] for s in speed])
    text = (f"{table}\n\n" + "\n".join(notes)
            + ("" if config.serving_only else f"\n\n{speed_table}") + "\n\n"
            f"Medians of {config.rounds} alternating rounds of {config.requests} single-row "
            f"requests (1-minute load average {load[0]:.1f} before them, {load[1]:.1f} after, "
            f"on {os.cpu_count()} cores)" + ("." if config.serving_only else
                                             "; the monitor reads the log, computes TFDV "
                                             "statistics of two half-windows and compares them "
                                             "(skew, drift, predictions)."))
    publish("monitoring", text, serving + speed + [{"setup": "load average", "before": load[0],
                                                    "after": load[1]}],
            write=output.write and not config.serving_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
