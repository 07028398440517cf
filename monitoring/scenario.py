"""`python -m monitoring.scenario` (`make ct-demo`): the production loop on one machine.

1. a warehouse of 2001-2006; the pipeline trains on it and pushes; the server starts, logging
   every request (--request-log-dir);
2. 2007 arrives from a shifted population (older mothers, more multiples, shorter gestation);
   its births are replayed through the server as prediction requests;
3. monitoring flags the shift (exit 2: skew against the training data, and the predictions
   against the eval predictions);
4. the pipeline ingests 2007 as new spans (--num-spans 12), warm-starts from the blessed
   model, is gated against it, and pushes; the server switches to the new version;
5. 2008 arrives from the same shifted population and is replayed; monitoring of this window
   against the new model is clean (exit 0).
Each step is printed; the command exits 0 only when every step did what it says.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import subprocess
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from common.config import command_parser, from_flags, setting
from common.net import free_port

SHIFT_FLAGS = dict(older_mothers=5.0, multiples_factor=4.0, gestation_shift=-2.0)
MODEL_NAME = "babyweight"


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _pipeline(work: pathlib.Path, database: pathlib.Path, extra: Sequence[str]) -> int:
    import local_runner

    return local_runner.main([
        "--database", str(database), "--pipeline-root", str(work / "root"),
        "--metadata-path", str(work / "metadata.sqlite"), "--reports-dir", str(work / "reports"),
        "--serving-dir", str(work / "serving" / MODEL_NAME), *extra])


def rows_of(database: pathlib.Path, year: int) -> List[Dict[str, Any]]:
    """The training query's rows for a year's months, as prediction instances."""
    from modules import features
    from warehouse import engine, spans, sql

    chosen = [spans.Span(year * 100 + m, 0, ()) for m in range(1, 13)]
    query = sql.to_duckdb(spans.span_query(sql.base_query(), chosen))
    frame = engine.connect(database).execute(query).df()
    return [{name: (str(row[name]) if isinstance(features.by_name(name),
                                                  features.CategoricalFeature)
                    else float(row[name])) for name in features.FEATURE_NAMES}
            for row in frame.to_dict("records")]


def replay(url: str, instances: List[Dict[str, Any]], per_request: int = 20) -> int:
    """Sends the instances as :predict requests; returns how many were answered."""
    import httpx

    with httpx.Client(timeout=60) as client:
        for start in range(0, len(instances), per_request):
            answer = client.post(f"{url}/v1/models/{MODEL_NAME}:predict",
                                 json={"instances": instances[start:start + per_request]})
            answer.raise_for_status()
    return len(instances)


def _served_version(url: str) -> Optional[int]:
    import httpx

    try:
        status = httpx.get(f"{url}/v1/models/{MODEL_NAME}", timeout=5).json()
        return max(int(v["version"]) for v in status["model_version_status"]
                   if v.get("state") == "AVAILABLE")
    except (httpx.HTTPError, ValueError, KeyError):
        return None


def wait_for_version(url: str, at_least: int, timeout: float = 180.0,
                     process: Optional[subprocess.Popen] = None,
                     log: Optional[pathlib.Path] = None) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise _ServerExited(process.returncode,
                                log.read_text(errors="replace") if log else "")
        version = _served_version(url)
        if version is not None and version >= at_least:
            return version
        time.sleep(0.5)
    raise RuntimeError(f"the server did not serve version {at_least} within {timeout:.0f} s")


class _ServerExited(RuntimeError):
    def __init__(self, code: int, log: str) -> None:
        super().__init__(f"the server exited with {code}:\n{log[-2000:]}")
        self.port_taken = "address already in use" in log.lower()


def _start(work: pathlib.Path, port: int) -> Tuple[subprocess.Popen, str]:
    """The server on `port` (0: a free one, picked again if another process binds it first)."""
    log_path = work / "server.log"
    for attempt in range(3):
        chosen = port or free_port()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "serving.server", "--model-dir",
                 str(work / "serving" / MODEL_NAME), "--port", str(chosen), "--grpc-port", "0",
                 "--poll-seconds", "1", "--request-log-dir", str(work / "request_log"),
                 "--request-log-sample-rate", "1", "--request-log-file-seconds", "1",
                 "--no-access-log"],
                env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{chosen}"
        try:
            wait_for_version(url, 1, process=process, log=log_path)
            return process, url
        except _ServerExited as exited:
            if not (exited.port_taken and port == 0 and attempt < 2):
                raise
        except RuntimeError:
            _stop(process)
            raise
    raise AssertionError("unreachable")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()  # SIGTERM: the server completes its request log's open file
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def server(work: pathlib.Path, port: int) -> Iterator[str]:
    """`python -m serving.server` logging every request, on loopback; stopped on exit."""
    process, url = _start(work, port)
    try:
        yield url
    finally:
        _stop(process)


def _logged_rows(url: str) -> Dict[str, float]:
    """The request log's written and dropped rows, from the server's own metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/monitoring/prometheus/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "babyweight_serving_request_log_records":
            return {s.labels["outcome"]: s.value for s in family.samples}
    raise RuntimeError("the server's metrics have no request-log counts")


def monitor(work: pathlib.Path, start_ms: int, end_ms: int) -> int:
    from monitoring import cli

    return cli.main(["--logs", str(work / "request_log"), "--model-dir",
                     str(work / "serving" / MODEL_NAME), "--metadata-path",
                     str(work / "metadata.sqlite"), "--reports-dir", str(work / "reports"),
                     "--start", str(start_ms / 1000), "--end", str(end_ms / 1000)])


def _now_ms() -> int:
    return int(time.time() * 1000)


def _expect(what: str, got: int, wanted: int) -> None:
    if got != wanted:
        raise RuntimeError(f"{what}: exit code {got}, expected {wanted}")


def run(work: pathlib.Path, rows_per_month: int, new_rows_per_month: int, port: int,
        training_flags: Sequence[str]) -> None:
    from serving import request_log
    from warehouse import months

    work.mkdir(parents=True, exist_ok=True)
    database = work / "natality.duckdb"
    shift = months.Shift(**SHIFT_FLAGS)
    gate = ["--rmse-upper-bound", "1.25", "--max-rmse-increase", "0.1", *training_flags]
    step(f"Warehouse: 2001-2006, {rows_per_month} births a month -> {database}")
    months.append(database, 72, rows_per_month, first_span=200101)
    step("Train on 2001-2006 and push")
    _expect("the first training run", _pipeline(work, database, gate), 0)
    with server(work, port) as url:
        first = _served_version(url)
        step(f"Serving version {first} at {url}, logging every request")
        step(f"2007 arrives from a shifted population ({SHIFT_FLAGS}); replay it as traffic")
        months.append(database, 12, new_rows_per_month, shift)
        start = _now_ms()
        replayed = replay(url, rows_of(database, 2007))
        _flush_log(url, work / "request_log", replayed)
        end = _now_ms()
        step("Monitor the 2007 window against version %s's training data" % first)
        _expect("monitoring of the shifted traffic", monitor(work, start, end), 2)
        step("Ingest 2007 as new spans, warm-start from the blessed model, gate, push")
        _expect("the retraining run", _pipeline(
            work, database, [*gate, "--num-spans", "12", "--warm-start"]), 0)
        second = wait_for_version(url, (first or 0) + 1)
        step(f"The server switched to version {second}")
        step("2008 arrives from the same population; replay it")
        months.append(database, 12, new_rows_per_month, shift)
        replayed += replay(url, rows_of(database, 2008))
        _flush_log(url, work / "request_log", replayed)
        next_end = _now_ms()
    step(f"Monitor the 2008 window against version {second}")
    _expect("monitoring of the next window", monitor(work, end, next_end), 0)
    files = request_log.complete_files(work / "request_log")
    step(f"Done: the loop closed; {len(files)} request-log files in {work / 'request_log'}, "
         f"pages under {work / 'reports' / 'monitoring'}")


def _flush_log(url: str, directory: pathlib.Path, rows: int, timeout: float = 120.0) -> None:
    """Waits until the server's log has written `rows` rows and completed the file holding
    them (monitoring reads completed files only). A dropped row stops the loop: monitoring
    would read a window with requests missing."""
    from serving import request_log

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = _logged_rows(url)
        if counts.get("dropped", 0):
            raise RuntimeError(f"the request log dropped {counts['dropped']:.0f} rows; see "
                               "the server's log")
        if counts.get("written", 0) >= rows and not list(
                directory.glob("*" + request_log.PARTIAL)):
            return
        time.sleep(0.2)
    raise RuntimeError(f"the request log did not complete a file with {rows} rows within "
                       f"{timeout:.0f} s")


@dataclasses.dataclass(frozen=True)
class ScenarioConfig:
    """The demo's sizes and places; any other flag goes to both pipeline runs."""

    work_dir: pathlib.Path = setting(pathlib.Path("runs/ct-demo"),
                                     "Everything the demo writes (must be empty or absent).")
    rows_per_month: int = setting(1000, "Births a month of 2001-2006.", minimum=1)
    new_rows_per_month: int = setting(1000, "Births a month of 2007 and 2008.", minimum=1)
    port: int = setting(
        8511, "The REST port of the demo's server (0: any free port).", minimum=0, maximum=65535)


def main(argv: Optional[List[str]] = None) -> int:
    parser = command_parser("python -m monitoring.scenario", __doc__, ScenarioConfig)
    args, training_flags = parser.parse_known_args(argv)
    config = from_flags(ScenarioConfig, args)
    if config.work_dir.exists() and not config.work_dir.is_dir():
        print(f"error: --work-dir {config.work_dir} is a file, not a directory; give an empty "
              "or absent directory", file=sys.stderr)
        return 1
    if config.work_dir.exists() and any(config.work_dir.iterdir()):
        print(f"error: {config.work_dir} is not empty; remove it or pass --work-dir",
              file=sys.stderr)
        return 1
    from common.errors import exit_code

    return exit_code(lambda: run(config.work_dir, config.rows_per_month,
                                 config.new_rows_per_month, config.port, training_flags),
                     (RuntimeError,), 1)


if __name__ == "__main__":
    sys.exit(main())
