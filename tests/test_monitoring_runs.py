"""Monitoring runs side by side and over time: two runs caching the eval predictions at once,
and run folders that sort by age whatever the machine's time zone."""
from __future__ import annotations

import os
import pathlib

import numpy as np

from monitoring import cli, predictions
from tests.test_monitoring import START, eval_traffic, monitored  # noqa: F401 - fixtures

pytest_plugins = ("tests.serving_fixtures",)


def test_two_runs_caching_the_eval_predictions_at_once_each_write_a_whole_file(
        eval_traffic, tmp_path, monkeypatch):
    import threading

    found, _, _ = eval_traffic
    real = predictions.compute
    monkeypatch.setattr(predictions, "compute", lambda lin: real(lin, max_examples=500))
    both_written = threading.Barrier(2, timeout=120)
    renamed = os.replace

    def replace(source, target):  # both have written their file before either renames it
        both_written.wait()
        return renamed(source, target)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(pathlib.Path, "replace", lambda self, target: replace(self, target))
    results, errors = [], []

    def run():
        try:
            results.append(predictions.cached(found, tmp_path / "cache"))
        except Exception as error:  # noqa: BLE001 - the test's finding
            errors.append(repr(error))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(results) == 2
    (cache,) = (tmp_path / "cache").iterdir()  # no temporary file left beside it
    assert np.array_equal(np.load(cache), results[0])


def test_run_folders_are_named_by_utc_time_so_the_newest_sorts_last(monitored, monkeypatch,
                                                                    capsys):
    """Named by local time, a run after a fall-back (or under another TZ) sorted as older."""
    import datetime
    import time

    _, common, reports = monitored
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14: its local date is not UTC's
    time.tzset()
    try:
        before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert cli.main(common + ["--end", str(START + 1)]) == 0, capsys.readouterr()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    newest = sorted((reports / "monitoring").glob("2*"))[-1]
    named = datetime.datetime.strptime(newest.name, cli.RUN_NAME)  # the UTC name's format
    assert datetime.timedelta(0) <= named - before < datetime.timedelta(minutes=10)


def test_a_run_named_by_utc_is_newer_than_an_older_one_named_by_local_time(tmp_path,
                                                                            monkeypatch):
    """Folders written before names were UTC hold local time: east of UTC, an older one sorts
    after a newer UTC name; the server's gauges and the index still take the newer run."""
    import json
    import time

    from common import run_folders
    from reports import pages
    from serving.monitoring_gauges import newest_summary

    monkeypatch.setenv("TZ", "Europe/Berlin")  # UTC+1 in December
    time.tzset()
    try:
        directory = tmp_path / "reports" / "monitoring"
        older = directory / "20261201-100000-000000"  # 09:00 UTC, in local time
        newer = directory / "20261201-093000-000000-UTC"
        for run, window in ((older, "older"), (newer, "newer")):
            run.mkdir(parents=True)
            (run / "summary.json").write_text(json.dumps({"version": 1, "window": window}))
        assert run_folders.oldest_first([newer, older]) == [older, newer]
        assert newest_summary(directory) == newer / "summary.json"
        listed = pages.monitoring_entries(tmp_path / "reports" / "index.html")
        assert [entry["window"] for entry in listed] == ["newer", "older"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
