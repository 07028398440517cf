"""`python -m monitoring`: is the served traffic still the data the model was trained on?

    .venv/bin/python -m monitoring --logs runs/request_log --model-dir serving_model/babyweight

Reads a window of the request log (default: the last --window up to the newest request),
computes TFDV statistics of it, and compares them with TFDV's comparators:
  - skew against the training statistics of the served version, found through ML Metadata
    (the version's push record names its Model artifact; its Trainer's examples; the
    StatisticsGen that described them);
  - drift against the window just before (not measured when that window logged nothing:
    the console, summary.json and metrics.prom say so);
  - the served predictions against the same model's predictions on its eval split.
Thresholds are the schema's, declared in modules/features.py. It prints every distance, writes
an HTML page, summary.json and the distances as Prometheus gauges (metrics.prom) under
<reports-dir>/monitoring/<UTC time>/, and links the page from the run reports' index. A server
started with `--monitoring-dir <reports-dir>/monitoring` shows the newest run's distances as
gauges on its own /monitoring/prometheus/metrics.

Exit codes: 0 every distance within its threshold, 2 a threshold crossed or the traffic breaks
the schema (the findings are printed; the page's verdict and the index say which), 3 the window
is incomplete: request-log files still open (.partial) may hold records from before its end, or
files opened before its end were deleted by the server (trimmed to --request-log-max-bytes)
while being read (whatever the distances; --allow-open-files, --allow-trimmed-files accept each
cause, exiting 0 or 2 by them instead, the page and the index still saying so), 1 anything else
(no logs, no lineage, a refused flag), with the cause in words.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import pathlib
import sys
from typing import Any, Dict, List, Optional, Sequence

from common import run_folders
from common.config import PipelineConfig, command_parser, from_flags, setting
from common.files import unusable_dir
from common.run_folders import RUN_NAME  # noqa: F401 (the callers')
from monitoring.verdict import (EXIT_CROSSED, EXIT_INCOMPLETE, Verdict,  # noqa: F401 (callers')
                                incomplete_text, refused_text, trimmed_text,
                                unread_text)

# A refused flag: "anything else", not EXIT_CROSSED, which is argparse's own usage code.
EXIT_USAGE = 1
LOGGER = logging.getLogger("babyweight.monitoring")


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """Which traffic, which model, where the page goes."""

    logs: str = setting("runs/request_log", "The server's --request-log-dir.")
    model_dir: str = setting(str(PipelineConfig.serving_dir),
                             "The served model's version directories (the server's --model-dir).")
    version: Optional[int] = setting(
        None, "Version whose traffic to check; default: the newest.", minimum=0)
    metadata_path: str = setting(str(PipelineConfig.metadata_path),
                                 "The pipeline's ML Metadata store, for the model's lineage.")
    reports_dir: str = setting(str(PipelineConfig.reports_dir),
                               "Run reports directory; pages go to <it>/monitoring/<time>/.")
    start: Optional[str] = setting(None, "Window start (ISO time, UTC unless given, or epoch "
                                   "seconds); default: --window before --end.")
    end: Optional[str] = setting(None, "Window end (exclusive); default: just after the newest "
                                 "logged request.")
    window: str = setting("1h", "Window length when --start is not given: 90s, 15m, 2h, 1d.")
    vertex_project: Optional[str] = setting(
        None, "For a version a Vertex AI run pushed: the project whose Vertex ML Metadata holds "
        "its lineage (instead of --metadata-path); artifacts are read through --gcs-mount.")
    vertex_region: str = setting("us-central1", "Region of that Vertex ML Metadata store.")
    gcs_mount: str = setting("/gcs", "Where Cloud Storage is mounted (gcsfuse), for "
                             "--vertex-project: gs://BUCKET/x is read as <mount>/BUCKET/x.")
    only_version: bool = setting(True, "Skew of only the requests the checked version answered "
                                 "(the previous window, for drift, holds every version's; the "
                                 "predictions are always the checked version's alone).")
    allow_open_files: bool = setting(
        False, "Exit 0 or 2 by the distances even when request-log files still open may hold "
        "records from before the window's end (otherwise exit 3); the page still says so.")
    allow_trimmed_files: bool = setting(
        False, "Exit 0 or 2 by the distances even when files opened before the window's end "
        "were deleted by the server while being read, their records lost (otherwise exit 3); "
        "the page still says so.")


def _window(config: MonitorConfig, frame):
    from monitoring import logs
    from serving import request_log

    if config.end is not None:
        end = logs.parse_time(config.end)
    elif len(frame):
        end = int(frame[request_log.TIME_KEY].max()) + 1
    else:
        end = int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)
    start = (logs.parse_time(config.start) if config.start is not None
             else end - logs.parse_duration(config.window))
    if start >= end:
        moment = datetime.datetime.fromtimestamp(end / 1000, datetime.timezone.utc)
        raise ValueError(f"--start {config.start} is not before the window's end "
                         f"({moment:%Y-%m-%d %H:%M:%S} UTC)")
    if not logs.describable(start - (end - start)):  # the window before it, for drift
        raise ValueError("the window before this one (drift's reference) would start before "
                         "the year 1: pass a later --start or a shorter --window")
    return logs.Window(start, end)


def _gauges(findings, version: int, drift_measured: bool = True, open_files: int = 0,
            trimmed_files: int = 0) -> str:
    lines = ["# HELP babyweight_monitoring_distance A TFDV distance between served traffic "
             "and its reference.", "# TYPE babyweight_monitoring_distance gauge",
             "# HELP babyweight_monitoring_threshold The distance's declared threshold.",
             "# TYPE babyweight_monitoring_threshold gauge"]
    for f in findings:
        labels = f'kind="{f.kind}",feature="{f.feature}",version="{version}"'
        lines.append(f"babyweight_monitoring_distance{{{labels}}} {f.value:.6g}")
        lines.append(f"babyweight_monitoring_threshold{{{labels}}} {f.threshold:.6g}")
    # Without it, no drift distance would look like no drift.
    lines += ["# HELP babyweight_monitoring_drift_measured 1 when drift against the previous "
              "window was measured, 0 when that window logged nothing.",
              "# TYPE babyweight_monitoring_drift_measured gauge",
              f'babyweight_monitoring_drift_measured{{version="{version}"}} {int(drift_measured)}']
    lines += ["# HELP babyweight_monitoring_open_files Request-log files still open that may "
              "hold records from before the window's end, which the window lacks.",
              "# TYPE babyweight_monitoring_open_files gauge",
              f'babyweight_monitoring_open_files{{version="{version}"}} {open_files}']
    lines += ["# HELP babyweight_monitoring_trimmed_files Request-log files opened before the "
              "window's end that the server deleted while they were read: records lost.",
              "# TYPE babyweight_monitoring_trimmed_files gauge",
              f'babyweight_monitoring_trimmed_files{{version="{version}"}} {trimmed_files}']
    return "\n".join(lines) + "\n"


def _drift(serving, previous, window, schema):
    """(drift findings, None), or ([], why drift was not measured): said, never left out."""
    from monitoring import compare

    if previous.empty:
        return [], f"the previous window ({window.previous().describe()}) logged nothing"
    return compare.drift(serving, compare.feature_statistics(previous), schema), None


def _lineage(config: MonitorConfig):
    """The served version's lineage: the local ML Metadata store, or Vertex ML Metadata."""
    from monitoring import lineage, vertex_lineage

    if config.vertex_project:
        return vertex_lineage.find(pathlib.Path(config.model_dir), config.vertex_project,
                                   config.vertex_region, config.version, config.gcs_mount)
    return lineage.find(pathlib.Path(config.model_dir), pathlib.Path(config.metadata_path),
                        config.version)


def _training_statistics(found):
    """The statistics the version's lineage names; missing (moved, deleted), named in words."""
    # Imported once the inputs are known to be there: a missing log is told at once.
    import tensorflow_data_validation as tfdv

    path = found.statistics_file("train")
    if not path.is_file():
        raise FileNotFoundError(f"the training statistics of version {found.version}, {path}, "
                                "which its lineage names, are missing")
    return tfdv.load_stats_binary(str(path))


def version_rows(current, version: int) -> Dict[int, int]:
    """Rows per model version in the window, the checked version first: a window of several
    versions must say so, not pass for the checked one's."""
    from serving import request_log

    counts = current[request_log.VERSION_KEY].value_counts()
    rows = {version: int(counts.get(version, 0))}
    rows.update((int(v), int(n)) for v, n in counts.items() if int(v) != version)
    return rows


def rows_text(rows: Dict[int, int]) -> str:
    """'4,000 logged rows of version 3', or with several versions each one's share."""
    total, (checked, *others) = sum(rows.values()), list(rows)
    if not others:
        return f"{total:,} logged rows of version {checked}"
    return f"{total:,} logged rows: " + ", ".join(
        f"{n:,} of version {v}" + (" (checked)" if v == checked else "") for v, n in rows.items())


def mixed_line(rows: Dict[int, int]) -> Optional[str]:
    """With several versions, which comparison used which rows (skew and drift are of the
    inputs, every version's; predictions only the checked version's)."""
    checked, *others = list(rows)
    if not others:
        return None
    return (f"  -- skew and drift measured on every version's inputs ({sum(rows.values()):,} "
            f"rows of versions {', '.join(str(v) for v in rows)}); the predictions on version "
            f"{checked}'s {rows[checked]:,} rows only")


def summary(findings, anomalies: Dict[str, str], version: int, window: str,
            rows: Dict[int, int], drift_not_measured: Optional[str] = None,
            open_files: int = 0, gone: Sequence[pathlib.Path] = (),
            trimmed: Sequence[pathlib.Path] = ()) -> Dict[str, Any]:
    """summary.json: what crossed, in words, every distance (the server's gauges read it,
    serving/monitoring_gauges.py), whether drift was measured, with why not, the rows of
    each version the window held (the predictions are compared on the checked one's only), and
    the files whose records it lacks: open, or deleted while read (`gone`; `trimmed` those of
    them opened before the window's end)."""
    from monitoring import logs

    return {"version": version, "window": window, "rows": sum(rows.values()),
            "rows_by_version": {str(v): n for v, n in rows.items()},
            "prediction_rows": rows[version], "mixed_versions": len(rows) > 1,
            **Verdict.of(findings, anomalies, open_files, len(trimmed)).summary(),
            "drift_measured": drift_not_measured is None,
            "drift_not_measured": drift_not_measured,
            "open_files": open_files, "open_files_not_read": unread_text(open_files),
            "trimmed_files": len(gone), "trimmed_files_not_read": logs.gone_text(gone),
            "trimmed_files_in_window": len(trimmed),
            "trimmed_files_in_window_lost": trimmed_text(trimmed),
            "findings": [dataclasses.asdict(f) for f in findings]}


def outcome_lines(findings, anomalies: Dict[str, str], drift_not_measured: Optional[str],
                  open_files: int = 0, trimmed: Sequence[pathlib.Path] = ()) -> List[str]:
    """What the console shows under the window: each distance, what broke the schema, drift
    that was not measured and records left in open files (otherwise only the page, or
    nothing, would say so)."""
    lines = [f"  {'!!' if f.crossed else 'ok'} {f.sentence()}" for f in findings]
    if drift_not_measured:
        lines.append(f"  -- drift not measured: {drift_not_measured}")
    if open_files:
        lines.append(f"  -- {unread_text(open_files)}")
    if trimmed:
        lines.append(f"  -- {trimmed_text(trimmed)}")
    lines += [f"  !! the traffic breaks the schema: feature '{name}': {text}"
              for name, text in anomalies.items()]
    return lines


def run(config: MonitorConfig, argv: List[str]) -> int:
    from monitoring import compare, logs, page, predictions
    from serving import request_log

    found = _lineage(config)
    opened, files, every, gone = logs.read_directory(pathlib.Path(config.logs))
    frame = (every[every[request_log.VERSION_KEY] == found.version] if config.only_version
             else every)
    window = _window(config, frame)
    # Drift is about the inputs, whichever version answered them.
    current, previous = logs.select(frame, window), logs.select(every, window.previous())
    rows = version_rows(current, found.version)
    unread = len(logs.open_before(opened, files, window.end_ms))
    if not rows[found.version]:  # its predictions are what the eval predictions are against
        raise LookupError(f"no request of version {found.version} was logged from "
                          f"{window.describe()}" + (f" ({rows_text(rows)})" if len(current)
                                                    else "") + (f"; {unread_text(unread)}"
                                                                if unread else ""))
    schema = compare.monitoring_schema()
    training = _training_statistics(found)
    serving = compare.feature_statistics(current)
    drift, drift_not_measured = _drift(serving, previous, window, schema)
    findings = compare.skew(training, serving, schema) + drift
    out_root = pathlib.Path(config.reports_dir) / "monitoring"
    evaluated = compare.prediction_statistics(predictions.cached(found, out_root / "cache"))
    checked = current[current[request_log.VERSION_KEY] == found.version]
    served = compare.prediction_statistics(checked[request_log.PREDICTION_KEY].to_numpy())
    findings += compare.predictions(evaluated, served)
    anomalies = compare.traffic_anomalies(serving, schema)
    trimmed = logs.trimmed_before(gone, window.end_ms)
    verdict = Verdict.of(findings, anomalies, unread, len(trimmed))

    stamp = run_folders.new_run_name()  # UTC (common/run_folders.py)
    out = out_root / stamp
    out.mkdir(parents=True, exist_ok=True)
    index = pathlib.Path(config.reports_dir) / "index.html"
    inputs = page.PageInputs(
        title=f"Monitoring: version {found.version}" + (
            "" if len(rows) == 1 else f" (skew and drift with versions "
            f"{', '.join(str(v) for v in list(rows)[1:])}'s inputs too)"),
        window=window.describe(),
        previous=(f"{window.previous().describe()}, {len(previous):,} rows" if len(previous)
                  else "nothing logged: drift not measured"),
        version=found.version, rows=rows_text(rows),
        training_statistics=str(found.statistics_file("train")), training=training,
        serving=serving, eval_predictions=evaluated, served_predictions=served,
        findings=findings, traffic_anomalies=anomalies, verdict=verdict,
        incomplete=incomplete_text(unread, trimmed),
        command="python -m monitoring " + " ".join(argv))
    page_path = out / "monitoring.html"
    page_path.write_text(page.render(inputs, page_path, index))
    (out / "metrics.prom").write_text(_gauges(findings, found.version,
                                              drift_not_measured is None, unread, len(trimmed)))
    # Written whole, then renamed: a server's scrape reads it at any moment.
    written = summary(findings, anomalies, found.version, window.describe(), rows,
                      drift_not_measured, unread, gone, trimmed)
    (out / "summary.json.partial").write_text(json.dumps(written, indent=2))
    (out / "summary.json.partial").replace(out / "summary.json")
    _refresh_index(config)

    print(f"Monitored {rows_text(rows)}, {window.describe()}:")
    older = [path for path in gone if path not in trimmed]  # the others: in outcome_lines
    for line in filter(None, [mixed_line(rows), older and f"  -- {logs.gone_text(older)}",
                              *outcome_lines(findings, anomalies, drift_not_measured, unread,
                                             trimmed)]):
        print(line)
    print(f"Page: {page_path.resolve().as_uri()}")
    code = verdict.exit_code(config.allow_open_files, config.allow_trimmed_files)
    if code == EXIT_INCOMPLETE:
        print("error: the window is incomplete: " + refused_text(
            unread, trimmed, config.allow_open_files, config.allow_trimmed_files),
            file=sys.stderr)
    return code


def _refresh_index(config: MonitorConfig) -> None:
    """The run reports' index lists the monitoring pages; a failure here only warns."""
    try:
        from reports.publisher import Reports

        Reports(pathlib.Path(config.metadata_path), pathlib.Path(config.reports_dir),
                None, None, False).write_index()
    except Exception as error:  # noqa: BLE001 - the page is written; the index is a convenience
        LOGGER.warning("could not refresh the reports index: %s", error)


def _flags(argv: List[str]) -> MonitorConfig:
    """The settings, or argparse's usage error (SystemExit 2) naming the flag."""
    parser = command_parser("python -m monitoring", __doc__, MonitorConfig)
    config = from_flags(MonitorConfig, parser.parse_args(argv))
    from monitoring import logs

    for flag, value, parse in (("--window", config.window, logs.parse_duration),
                               ("--start", config.start, logs.parse_time),
                               ("--end", config.end, logs.parse_time)):
        try:
            if value is not None:
                parse(value)  # before the log is looked for: the flag's fault
        except ValueError as error:
            parser.error(f"{flag}: {error}")
    return config


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        config = _flags(argv)
    except SystemExit as usage:
        # argparse's usage errors exit 2, which here means a threshold was crossed: a
        # scheduler acting on that must not take a mistyped flag for drift.
        if usage.code == 2:
            return EXIT_USAGE
        raise
    unusable = unusable_dir(pathlib.Path(config.reports_dir) / "monitoring")
    if unusable:
        print(f"error: --reports-dir {config.reports_dir}: {unusable}", file=sys.stderr)
        return 1
    from common import logs as pipeline_logs

    pipeline_logs.setup(False)
    try:
        return run(config, argv)
    except (LookupError, OSError, ValueError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    except Exception as error:
        tf = sys.modules.get("tensorflow")
        if tf is None or not isinstance(error, tf.errors.OpError):
            raise
        print(f"error: {type(error).__name__}: {one_line(error)}", file=sys.stderr)
        return 1


def one_line(error: BaseException) -> str:
    """An error's first line: TensorFlow's texts can run to several."""
    text = str(getattr(error, "message", "") or error)
    return text.splitlines()[0] if text.strip() else type(error).__name__
