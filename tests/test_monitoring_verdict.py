"""A monitoring run's verdict, made once (monitoring/verdict.py): what the exit code, the
page's verdict card, summary.json and the reports index say of a window, with no model."""
from __future__ import annotations

import json

from monitoring import cli, verdict
from monitoring.compare import Finding
from reports import pages

WITHIN = Finding("skew", "mother_age", "Jensen-Shannon divergence", 0.01, 0.1)
ABOVE = Finding("skew", "plurality", "L-infinity distance", 0.3, 0.1)
BREAK = {"mother_age": "Unexpectedly large value: 70."}


def test_a_schema_break_alone_is_flagged_and_named_as_a_schema_break():
    judged = verdict.Verdict.of([WITHIN], BREAK)
    assert judged.flagged and judged.exit_code() == cli.EXIT_CROSSED == 2
    assert judged.headline == "breaks the schema" and judged.label == "1 schema break"
    both = verdict.Verdict.of([WITHIN, ABOVE], BREAK)
    assert both.headline == "threshold crossed, breaks the schema"
    assert both.label == "1 above threshold, 1 schema break"
    clean = verdict.Verdict.of([WITHIN], {})
    assert (clean.flagged, clean.headline, clean.label, clean.exit_code()) == (
        False, "clean", "clean", 0)


def test_the_summary_and_the_index_give_the_verdict_the_exit_code_follows(tmp_path):
    summary = cli.summary([WITHIN], BREAK, 3, "w", {3: 10})
    assert summary["verdict"] == "1 schema break" and summary["flagged"] is True
    assert summary["thresholds_crossed"] == []
    assert summary["crossed"] == ["traffic feature 'mother_age': Unexpectedly large value: 70."]
    older = {k: v for k, v in summary.items()
             if k not in ("verdict", "flagged", "thresholds_crossed", "schema_breaks")}
    for name, written in (("20270101-000000-000001", summary), ("20270101-000000-000000", older)):
        (tmp_path / "monitoring" / name).mkdir(parents=True)
        (tmp_path / "monitoring" / name / "summary.json").write_text(json.dumps(written))
    entries = pages.monitoring_entries(tmp_path / "index.html")
    assert [e["verdict"] for e in entries] == [{"text": "1 schema break", "bad": True}] * 2


def test_records_known_to_be_missing_are_exit_3_unless_accepted_and_said_everywhere(tmp_path):
    judged = verdict.Verdict.of([WITHIN], {}, open_files=2)
    assert judged.exit_code() == cli.EXIT_INCOMPLETE == 3
    assert judged.exit_code(allow_open_files=True) == 0
    assert verdict.Verdict.of([ABOVE], {}, 1).exit_code() == cli.EXIT_INCOMPLETE
    assert verdict.Verdict.of([ABOVE], {}, 1).exit_code(allow_open_files=True) == 2
    assert judged.headline == "clean, window incomplete"
    assert judged.label == "clean; window incomplete (2 request-log files still open)"
    assert 'babyweight_monitoring_open_files{version="3"} 2\n' in cli._gauges([WITHIN], 3,
                                                                              open_files=2)
    assert 'babyweight_monitoring_open_files{version="3"} 0\n' in cli._gauges([WITHIN], 3)
    (tmp_path / "monitoring" / "1").mkdir(parents=True)
    (tmp_path / "monitoring" / "1" / "summary.json").write_text(
        json.dumps(cli.summary([WITHIN], {}, 3, "w", {3: 10}, None, open_files=2)))
    (entry,) = pages.monitoring_entries(tmp_path / "index.html")
    assert entry["verdict"] == {"text": judged.label, "bad": True}


def test_files_trimmed_away_while_read_make_the_window_incomplete_each_cause_its_own_flag(
        tmp_path):
    from monitoring import logs
    from serving import request_log
    from serving.monitoring_gauges import MonitoringGauges

    end_ms = 1_800_000_000_000
    before, after = (request_log.file_stem(tmp_path, seconds, 7, 1).with_suffix(
        request_log.SUFFIX) for seconds in (end_ms / 1000 - 60, end_ms / 1000))
    unnamed = tmp_path / f"other{request_log.SUFFIX}"
    assert logs.trimmed_before([before, after, unnamed], end_ms) == [before, unnamed]
    judged = verdict.Verdict.of([WITHIN], {}, open_files=1, trimmed_files=2)
    assert judged.exit_code() == judged.exit_code(allow_open_files=True) == cli.EXIT_INCOMPLETE
    assert judged.exit_code(allow_trimmed_files=True) == cli.EXIT_INCOMPLETE
    assert judged.exit_code(allow_open_files=True, allow_trimmed_files=True) == 0
    assert verdict.Verdict.of([ABOVE], {}, 0, 1).exit_code(allow_trimmed_files=True) == 2
    assert judged.headline == "clean, window incomplete"
    assert judged.label == ("clean; window incomplete (1 request-log file still open, "
                            "2 request-log files trimmed away while read)")
    assert verdict.refused_text(1, [before], True, False) == (
        f"{cli.trimmed_text([before])}; --allow-trimmed-files accepts it")
    assert verdict.incomplete_text(0, [before]) == cli.trimmed_text([before])
    assert cli.trimmed_text([before, unnamed]).startswith(
        f"2 request-log files ({before.name}, {unnamed.name}) opened before the window's end were")
    assert 'babyweight_monitoring_trimmed_files{version="3"} 2\n' in cli._gauges(
        [WITHIN], 3, trimmed_files=2)
    written = cli.summary([WITHIN], {}, 3, "w", {3: 10}, None, 0, [before, after], [before])
    assert (written["trimmed_files"], written["trimmed_files_in_window"]) == (2, 1)
    assert written["trimmed_files_in_window_lost"] == cli.trimmed_text([before])
    assert written["verdict"] == "clean; window incomplete (1 request-log file trimmed away " \
        "while read)"
    (tmp_path / "monitoring" / "1").mkdir(parents=True)
    (tmp_path / "monitoring" / "1" / "summary.json").write_text(json.dumps(written))
    (entry,) = pages.monitoring_entries(tmp_path / "index.html")
    assert entry["verdict"] == {"text": written["verdict"], "bad": True}
    older = {k: v for k, v in written.items() if k not in ("verdict", "flagged")}
    assert verdict.index_cell(older) == entry["verdict"]
    gauges = {m.name: m.samples for m in MonitoringGauges(str(tmp_path / "monitoring")).collect()}
    assert [s.value for s in gauges["babyweight_monitoring_trimmed_files"]] == [1]
