"""Monitoring's failures are one line naming the cause, before any work when a flag is at fault;
and a log file the server deletes while it is read is skipped and said, not a traceback."""
from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

from monitoring import cli, lineage, logs
from serving import request_log
from tests.test_monitoring import HOUR, START, _log, eval_traffic, monitored  # noqa: F401

pytest_plugins = ("tests.serving_fixtures",)


def test_an_unknown_flag_or_a_help_request_keeps_its_exit_code_apart_from_drift(capsys):
    assert cli.main(["--no-such-flag"]) == cli.EXIT_USAGE
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    with pytest.raises(SystemExit) as helped:
        cli.main(["--help"])
    helped_text = capsys.readouterr().out
    assert helped.value.code == 0 and "--allow-open-files" in helped_text
    assert "--allow-trimmed-files" in helped_text
    assert "(trimmed to --request-log-max-bytes)" in helped_text


@pytest.mark.parametrize("flag,value", [("--end", "inf"), ("--end", "1e20"), ("--start", "nan"),
                                        ("--start", "2026-13-01"), ("--end", "-1e15")])
def test_a_bad_start_or_end_is_the_flag_s_error_before_any_log_is_read(flag, value, tmp_path,
                                                                       capsys):
    code = cli.main(["--logs", str(tmp_path / "none"), f"{flag}={value}"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE != cli.EXIT_CROSSED, "a mistyped flag is not drift"
    assert f"{flag}: " in err and repr(value) in err, err
    assert "Traceback" not in err and "request-log" not in err


def test_a_reports_dir_that_is_a_file_is_exit_1_in_words(tmp_path, capsys):
    (tmp_path / "reports").write_text("")
    code = cli.main(["--logs", str(tmp_path / "none"), "--reports-dir", str(tmp_path / "reports")])
    assert code == 1 and capsys.readouterr().err == (
        f"error: --reports-dir {tmp_path / 'reports'}: {tmp_path / 'reports'} is a file, so no "
        "directory can be made under it\n")


def test_training_statistics_moved_away_are_named(monitored, tmp_path, monkeypatch, capsys):
    import dataclasses

    _, common, _ = monitored
    found = lineage.find

    def moved(*args, **kwargs):  # the real lineage, its statistics no longer where it says
        return dataclasses.replace(found(*args, **kwargs), statistics_uri=str(tmp_path / "gone"))

    monkeypatch.setattr(lineage, "find", moved)
    code = cli.main(common + ["--end", str(START + 1), "--reports-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"{tmp_path / 'gone' / 'Split-train'}" in err and "are missing" in err


def test_a_log_file_the_server_deletes_while_it_is_read_is_said(monitored, tmp_path,
                                                                 monkeypatch, capsys):
    """Opened before the window's end, its records of the window are lost: the window is
    incomplete (exit 3 unless --allow-trimmed-files), on every surface; opened after the end, it
    held none of the window's records and is only said."""
    import shutil

    import markupsafe

    _, common, _ = monitored
    logged = pathlib.Path(common[common.index("--logs") + 1])
    listed, trim = request_log.complete_files, [0]

    def trimmed(directory):  # what the server's trim() does to a file, meanwhile
        found = listed(directory)
        found[trim[0]].unlink()
        return found

    monkeypatch.setattr(request_log, "complete_files", trimmed)

    def monitor(*flags):
        name = f"{len(flags)}{trim[0]}"
        copy, reports = tmp_path / f"log{name}", tmp_path / f"r{name}"
        shutil.copytree(logged, copy)
        code = cli.main(common + ["--logs", str(copy), "--reports-dir", str(reports), *flags])
        (run,) = (reports / "monitoring").glob("2*")
        return code, capsys.readouterr(), run, reports

    end = ["--end", str(START + HOUR + 1)]
    code, printed, run, reports = monitor(*end)  # the oldest file, opened at START
    gone = listed(logged)[0]
    lost = cli.trimmed_text([gone])
    assert code == cli.EXIT_INCOMPLETE, printed
    assert lost == (f"1 request-log file ({gone.name}) opened before the window's end was "
                    "deleted by the server while being read (it deletes the oldest files to keep "
                    "the log within --request-log-max-bytes): the records of this window it held "
                    "are lost; give the log more room, or --allow-trimmed-files accepts the "
                    "window without them")
    assert f"  -- {lost}\n" in printed.out and "deleted while being read (the" not in printed.out
    assert printed.err == (f"error: the window is incomplete: {lost}; --allow-trimmed-files "
                           "accepts it\n")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["trimmed_files"], summary["trimmed_files_in_window"]) == (1, 1)
    assert summary["trimmed_files_in_window_lost"] == lost
    assert summary["verdict"].endswith(
        " above threshold; window incomplete (1 request-log file trimmed away while read)")
    page = (run / "monitoring.html").read_text()
    assert (f"<strong>This window is incomplete:</strong> {markupsafe.escape(lost)}.") in page
    assert "window incomplete</div>" in page
    assert "trimmed away while read)</td>" in (reports / "index.html").read_text()
    assert ('babyweight_monitoring_trimmed_files{version="'
            in (run / "metrics.prom").read_text())
    # Accepted, the exit is the distances' (the shifted hour crosses), the page still says it.
    code, printed, run, _ = monitor(*end, "--allow-trimmed-files")
    assert code == cli.EXIT_CROSSED and f"  -- {lost}\n" in printed.out, printed
    assert "This window is incomplete" in (run / "monitoring.html").read_text()
    # The newest file, opened after the end of a window of the first hour, held none of it.
    trim[0] = -1
    code, printed, run, _ = monitor("--end", str(START + 1))
    assert code == 0, printed
    assert (f"  -- 1 request-log file ({listed(logged)[-1].name}) deleted while being "
            "read (the server deletes the oldest files to keep the log within its size): their "
            "rows are not counted" in printed.out)
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["trimmed_files"], summary["trimmed_files_in_window"]) == (1, 0)
    assert "incomplete" not in summary["verdict"]


def test_reading_a_deleted_log_file_names_it_or_skips_it_for_the_caller_to_say(tmp_path):
    rows = [{"is_male": "True", "plurality": "Single(1)", "mother_age": 30,
             "gestation_weeks": 39}] * 10
    _log(tmp_path / "log", rows, np.full(len(rows), 7.0), 1, START)
    (kept,) = request_log.complete_files(tmp_path / "log")
    deleted = tmp_path / "log" / ("deleted" + request_log.SUFFIX)
    with pytest.raises(FileNotFoundError, match=f"the request-log file {deleted} was deleted"):
        logs.read([kept, deleted])
    gone = []
    assert len(logs.read([deleted, kept], gone=gone)) == len(rows) and gone == [deleted]
