"""Monitoring over a real pipeline run's served model: lineage from the push record, a clean
window of traffic like the eval data, and a shifted window that crosses the declared thresholds
(skew, drift and predictions), with the page, the gauges, the exit code and the index link; and
the command itself, run as a user runs it, whose distances a server then shows as gauges."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import markupsafe
import numpy as np
import pytest

from modules import features
from monitoring import cli, lineage, logs, predictions
from monitoring import page as monitoring_page
from serving import request_log
from serving.request_log import RequestLog, RequestLogConfig
from tests.serving_fixtures import PROJECT_ROOT
from tests.test_monitoring_gauges import _parse, _scrape

pytest_plugins = ("tests.serving_fixtures",)

HOUR = 3600.0
START = 1_800_000_000.0


def _eval_rows(found: lineage.Lineage, limit: int):
    import tensorflow as tf

    files = sorted(str(p) for p in found.examples_dir("eval").glob("*"))
    spec = {f.name: tf.io.FixedLenFeature([], tf.string if isinstance(
        f, features.CategoricalFeature) else tf.int64) for f in features.FEATURES}
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit):
        parsed = tf.io.parse_single_example(record, spec)
        rows.append({k: (v.numpy().decode() if v.dtype == tf.string else int(v.numpy()))
                     for k, v in parsed.items()})
    return rows


def _log(directory: pathlib.Path, rows, values, version: int, at: float) -> None:
    log = RequestLog(RequestLogConfig(str(directory), sample_rate=1.0), clock=lambda: at)
    for start in range(0, len(rows), 50):
        log.log(rows[start:start + 50], values[start:start + 50], version)
    log.close()
    assert log.dropped == 0


@pytest.fixture(scope="module")
def eval_traffic(pipeline_runs):
    """The served version's lineage, eval rows and its predictions on them."""
    found = lineage.find(pipeline_runs.base / "serving" / "babyweight",
                         pipeline_runs.metadata_path)
    served = predictions.compute(found, max_examples=3000)
    return found, _eval_rows(found, len(served)), served


@pytest.fixture(scope="module")
def monitored(pipeline_runs, eval_traffic, tmp_path_factory):
    serving_dir = pipeline_runs.base / "serving" / "babyweight"
    found, rows, served = eval_traffic
    shifted = [{**r, "mother_age": min(r["mother_age"] + 12, 60),
                "plurality": features.PLURALITY_NAMES[1]} for r in rows]
    directory = tmp_path_factory.mktemp("request_log")
    _log(directory, rows, served, found.version, START)
    _log(directory, shifted, served - 1.5, found.version, START + HOUR)
    reports = tmp_path_factory.mktemp("monitoring_reports")
    common = ["--logs", str(directory), "--model-dir", str(serving_dir), "--metadata-path",
              str(pipeline_runs.metadata_path), "--reports-dir", str(reports), "--window", "1h"]
    return found, common, reports


def test_lineage_finds_the_training_statistics_of_the_served_version(pipeline_runs):
    found = lineage.find(pipeline_runs.base / "serving" / "babyweight",
                         pipeline_runs.metadata_path)
    assert found.statistics_file("train").is_file()
    assert found.examples_dir("eval").is_dir()
    with pytest.raises(lineage.LineageError, match="no version 1 under"):
        lineage.find(pipeline_runs.base / "serving" / "babyweight",
                     pipeline_runs.metadata_path, version=1)


def test_a_window_like_the_eval_data_is_clean(monitored, capsys):
    _, common, reports = monitored
    code = cli.main(common + ["--end", str(START + 1)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert printed.count(" ok ") == len(features.FEATURES) + 1  # skew of each, predictions
    # Nothing was logged in the hour before: no drift distance, and the command says why.
    assert "drift of" not in printed
    assert "-- drift not measured: the previous window (" in printed


def test_a_shifted_window_crosses_the_thresholds_and_says_so(monitored, capsys):
    found, common, reports = monitored
    code = cli.main(common + ["--end", str(START + HOUR + 1)])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_CROSSED, printed
    for kind in ("skew", "drift"):
        for name in ("mother_age", "plurality"):
            assert f"!! {kind} of {name}" in printed
        assert f"ok {kind} of is_male" in printed  # unchanged, so within its threshold
    assert f"!! prediction of {request_log.PREDICTION_KEY}" in printed
    newest = max((reports / "monitoring").glob("2*"))
    page = (newest / "monitoring.html").read_text()
    assert "threshold crossed" in page and page.count("<svg") == len(features.FEATURES) + 1
    assert str(markupsafe.escape(monitoring_page.copies_note(features.IS_MALE))) in page
    summary = json.loads((newest / "summary.json").read_text())
    assert summary["version"] == found.version and summary["crossed"]
    gauges = (newest / "metrics.prom").read_text()
    assert f'babyweight_monitoring_distance{{kind="skew",feature="mother_age",' in gauges


def test_a_window_of_two_versions_says_each_ones_rows_and_compares_only_its_predictions(
        monitored, eval_traffic, tmp_path, capsys):
    """Another version's rows (predictions 1.5 lb lower) then the checked one's: with
    --no-only-version skew sees both, the predictions only the checked version's."""
    found, rows, served = eval_traffic
    _, common, _ = monitored
    other, n = found.version + 7, min(2000, len(rows))
    directory = tmp_path / "request_log"
    _log(directory, rows[:n], served[:n] - 1.5, other, START + 10 * HOUR)
    _log(directory, rows[:n], served[:n], found.version, START + 10 * HOUR + 60)
    flags = common + ["--logs", str(directory), "--reports-dir", str(tmp_path / "reports")]
    code = cli.main(flags + ["--no-only-version"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (f"Monitored {2 * n:,} logged rows: {n:,} of version {found.version} (checked), "
            f"{n:,} of version {other}, ") in printed
    assert (f"-- skew and drift measured on every version's inputs ({2 * n:,} rows of versions "
            f"{found.version}, {other}); the predictions on version {found.version}'s {n:,} "
            "rows only") in printed
    assert f"ok prediction of {request_log.PREDICTION_KEY}" in printed
    (run,) = (tmp_path / "reports" / "monitoring").glob("2*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rows"] == 2 * n and summary["prediction_rows"] == n
    assert summary["rows_by_version"] == {str(found.version): n, str(other): n}
    assert summary["mixed_versions"] is True
    page = (run / "monitoring.html").read_text()
    assert (f"{2 * n:,} logged rows: {n:,} of version {found.version} (checked), "
            f"{n:,} of version {other}") in page, "the page, too, says whose rows they are"
    # By default the window is the checked version's alone, and says nothing of mixing.
    assert cli.main(flags) == 0
    printed = capsys.readouterr().out
    assert f"Monitored {n:,} logged rows of version {found.version}, " in printed
    assert "every version's inputs" not in printed


def test_records_still_in_an_open_file_before_the_end_are_said_to_be_left_out(
        monitored, eval_traffic, tmp_path, capsys):
    found, rows, served = eval_traffic
    _, common, _ = monitored
    directory, at = tmp_path / "request_log", START + 20 * HOUR
    _log(directory, rows, served, found.version, at)
    records = [request_log.encode(r, float(p), found.version, int((at + 30) * 1000))
               for r, p in zip(rows[:100], served[:100])]
    stem = request_log.file_stem(directory, at + 30, 1, 1)  # opened 30 s after the first
    pathlib.Path(f"{stem}{request_log.SUFFIX}{request_log.PARTIAL}").write_bytes(
        request_log.framed(records))
    reports = tmp_path / "reports"
    flags = common + ["--logs", str(directory), "--reports-dir", str(reports)]
    assert cli.main(flags + ["--end", str(at + 60)]) == cli.EXIT_INCOMPLETE == 3
    printed = capsys.readouterr()
    assert f"  -- {cli.unread_text(1)}\n" in printed.out
    assert printed.err == (f"error: the window is incomplete: {cli.unread_text(1)}; "
                           "--allow-open-files accepts it\n")
    (run,) = (reports / "monitoring").glob("2*")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["open_files"] == 1 and summary["open_files_not_read"] == cli.unread_text(1)
    page = (run / "monitoring.html").read_text()
    assert '<div class="big bad" id="verdict">clean, window incomplete</div>' in page
    assert (f"<strong>This window is incomplete:</strong> "
            f"{markupsafe.escape(cli.unread_text(1))}.") in page
    assert 'babyweight_monitoring_open_files{version="' in (run / "metrics.prom").read_text()
    index = (reports / "index.html").read_text()
    assert '<td class="bad">clean; window incomplete (1 request-log file still open)</td>' in index
    # Accepted, the exit is the distances' (the page still says it); a window ending before
    # the open file was opened, and its records, misses nothing.
    assert cli.main(flags + ["--end", str(at + 60), "--allow-open-files"]) == 0
    assert f"  -- {cli.unread_text(1)}\n" in capsys.readouterr().out
    assert cli.main(flags + ["--end", str(at + 10)]) == 0
    assert "still open" not in capsys.readouterr().out


def test_traffic_that_breaks_the_schema_is_one_verdict_on_the_page_the_index_and_the_exit(
        monitored, eval_traffic, tmp_path, capsys):
    found, rows, served = eval_traffic
    _, common, _ = monitored
    directory, at = tmp_path / "request_log", START + 30 * HOUR
    _log(directory, rows + [{**rows[0], "mother_age": 70}], np.append(served, served[0]),
         found.version, at)
    reports = tmp_path / "reports"
    code = cli.main(common + ["--logs", str(directory), "--reports-dir", str(reports)])
    printed = capsys.readouterr().out
    assert code == cli.EXIT_CROSSED, printed
    assert "!! the traffic breaks the schema: feature 'mother_age'" in printed
    assert " ABOVE " not in printed  # every distance is within its threshold
    (run,) = (reports / "monitoring").glob("2*")
    page = (run / "monitoring.html").read_text()
    assert '<div class="big bad" id="verdict">breaks the schema</div>' in page, page
    assert "; 1 feature breaking the schema" in page and ">clean<" not in page
    summary = json.loads((run / "summary.json").read_text())
    assert summary["verdict"] == "1 schema break" and summary["thresholds_crossed"] == []
    assert summary["schema_breaks"][0].startswith("feature 'mother_age': ")
    assert summary["flagged"] is True and len(summary["crossed"]) == 1
    index = (reports / "index.html").read_text()
    assert '<td class="bad">1 schema break</td>' in index and "above threshold" not in index


def test_the_reports_index_links_the_monitoring_pages(monitored, pipeline_runs, capsys):
    _, common, reports = monitored
    cli.main(common + ["--end", str(START + 1)])
    index = (reports / "index.html").read_text()
    pages = list((reports / "monitoring").glob("*/monitoring.html"))
    assert pages and all(f"{p.parent.name}/monitoring.html" in index for p in pages)


def test_the_commands_distances_are_gauges_on_the_servers_metrics(monitored, pipeline_runs,
                                                                  server_factory):
    """`python -m monitoring` in its own process on the logged shifted window; a server over
    the same model dir, started with --monitoring-dir, then shows that run's distances."""
    found, common, reports = monitored
    results = reports / "monitoring"
    before = set(results.glob("2*"))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": str(PROJECT_ROOT)}
    ran = subprocess.run([sys.executable, "-m", "monitoring", *common,
                          "--end", str(START + HOUR + 1)], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert ran.returncode == cli.EXIT_CROSSED, ran.stdout + ran.stderr
    assert "!! skew of mother_age" in ran.stdout
    (run,) = set(results.glob("2*")) - before
    summary = json.loads((run / "summary.json").read_text())
    findings = summary["findings"]
    assert {f["kind"] for f in findings} == {"skew", "drift", "prediction"}
    assert summary["drift_measured"] is True

    server = server_factory(pipeline_runs.base / "serving" / "babyweight", "--monitoring-dir",
                            str(results))
    scraped = _parse(_scrape(server))
    # The server reads the run's summary.json; its floats go through JSON and the exposition
    # format unchanged (both write a float's shortest exact repr), so no tolerance is needed.
    expected = {}
    for f in findings:
        labels = (("feature", f["feature"]), ("kind", f["kind"]), ("version", str(found.version)))
        expected[("babyweight_monitoring_distance", labels)] = f["value"]
        expected[("babyweight_monitoring_threshold", labels)] = f["threshold"]
    expected[("babyweight_monitoring_drift_measured", (("version", str(found.version)),))] = 1
    expected[("babyweight_monitoring_open_files", (("version", str(found.version)),))] = 0
    assert scraped == expected
    # ... and they are the series of the textfile the same run wrote (same names and labels).
    assert set(scraped) == set(_parse((run / "metrics.prom").read_text()))
    crossed = {(dict(labels)["kind"], dict(labels)["feature"]) for (name, labels), value
               in scraped.items() if name == "babyweight_monitoring_distance"
               and value > scraped[("babyweight_monitoring_threshold", labels)]}
    assert {("skew", "mother_age"), ("drift", "plurality")} <= crossed


def test_no_logs_is_exit_1_in_words(pipeline_runs, tmp_path, capsys):
    code = cli.main(["--logs", str(tmp_path / "none"), "--model-dir",
                     str(pipeline_runs.base / "serving" / "babyweight"),
                     "--metadata-path", str(pipeline_runs.metadata_path),
                     "--reports-dir", str(tmp_path)])
    assert code == 1 and "no complete request-log files" in capsys.readouterr().err


@pytest.mark.parametrize("window", ["1x", "inf", "nan", "0m", "0.0001s"])
def test_a_bad_window_is_the_flag_s_error_before_any_log_is_read(window, tmp_path, capsys):
    code = cli.main(["--logs", str(tmp_path / "none"), "--window", window])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE != cli.EXIT_CROSSED, "a mistyped flag is not drift"
    assert "--window" in err and repr(window) in err, err
    assert "request-log" not in err


def test_windows_parse_times_and_durations():
    assert logs.parse_duration("15m") == 15 * 60 * 1000
    assert logs.parse_time("1970-01-01T00:01:00") == 60_000
    window = logs.Window(10_000, 20_000)
    assert window.previous() == logs.Window(0, 10_000)
    assert np.isclose(logs.parse_time("1.5"), 1500)


def test_a_window_s_label_names_its_bounds_to_the_millisecond_when_they_need_it():
    """The default end is just after the newest request: cut to seconds, the window ending
    there and the one starting there would read alike."""
    hour, at = 3_600_000, logs.parse_time("2027-01-15T09:00")
    first, second = logs.Window(at - hour + 1, at + 1), logs.Window(at - hour, at)
    assert first.describe() == "2027-01-15 08:00:00.001 UTC to 2027-01-15 09:00:00.001 UTC"
    assert first.describe() != second.describe()
    assert second.describe() == "2027-01-15 08:00:00 UTC to 2027-01-15 09:00:00 UTC"
    assert logs.Window(at, at + 1500).describe().endswith("09:00:01.500 UTC")


def test_a_metadata_path_that_is_no_store_is_exit_1_in_words(tmp_path, capsys):
    version = tmp_path / "serving" / "3"
    version.mkdir(parents=True)
    (version / lineage.PUSH_RECORD).write_text(json.dumps({"model_id": 1}))
    (tmp_path / "notdb").write_text("not a database\n")
    code = cli.main(["--logs", str(tmp_path / "logs"), "--model-dir", str(version.parent),
                     "--metadata-path", str(tmp_path / "notdb"),
                     "--reports-dir", str(tmp_path / "reports")])
    err = capsys.readouterr().err
    assert code == 1 and err == (f"error: {tmp_path / 'notdb'} is not an ML Metadata store "
                                 "(SQLite says: file is not a database)\n")


def test_a_complete_log_file_cut_short_is_named(tmp_path):
    rows = [{"is_male": "True", "plurality": "Single(1)", "mother_age": 20 + i % 20,
             "gestation_weeks": 30 + i % 12} for i in range(4000)]
    _log(tmp_path / "log", rows, np.linspace(5, 9, len(rows)), 1, START)
    (good,) = request_log.complete_files(tmp_path / "log")
    assert len(logs.read([good])) == len(rows)
    cut = tmp_path / "log" / ("cut" + request_log.SUFFIX)
    size = good.stat().st_size // 2 + 100  # not at a record's end: a cut there reads as whole
    cut.write_bytes(good.read_bytes()[:size])
    with pytest.raises(logs.UnreadableLogError, match=f"the request-log file {cut} cannot be "
                       "read: its record at byte [0-9]+ is cut short") as raised:
        logs.read(request_log.complete_files(tmp_path / "log"))
    assert isinstance(raised.value, ValueError)  # what the command reports in words, exit 1
    assert "\n" not in str(raised.value)


def test_drift_not_measured_is_said_on_the_console_in_the_summary_and_the_gauges():
    import pandas as pd
    from monitoring.compare import Finding

    window = logs.Window(int(START * 1000), int((START + HOUR) * 1000))
    drift, reason = cli._drift(None, pd.DataFrame({request_log.TIME_KEY: []}), window, None)
    assert drift == [] and reason == (f"the previous window ({window.previous().describe()}) "
                                      "logged nothing")
    findings = [Finding("skew", "mother_age", "jensen_shannon_divergence", 0.02, 0.1)]
    lines = cli.outcome_lines(findings, {}, reason)
    assert lines[-1] == f"  -- drift not measured: {reason}" and len(lines) == 2
    written = json.loads(json.dumps(cli.summary(findings, {}, 3, window.describe(), {3: 10}, reason)))
    assert written["drift_measured"] is False and written["drift_not_measured"] == reason
    assert 'babyweight_monitoring_drift_measured{version="3"} 0\n' in cli._gauges(
        findings, 3, drift_measured=False)
    # Measured: the summary and the gauge say so, and the console has no such line.
    assert cli.summary(findings, {}, 3, "w", {3: 10})["drift_measured"] is True
    assert 'babyweight_monitoring_drift_measured{version="3"} 1\n' in cli._gauges(findings, 3)
    assert not any("not measured" in line for line in cli.outcome_lines(findings, {}, None))
