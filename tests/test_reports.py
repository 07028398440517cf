"""The analyst reports as a person sees them: opened from disk in headless Chromium with the
network blocked, checked against the numbers TFMA and ML Metadata hold, and screenshotted.

Numbers are compared exactly: a page keeps each one as Python's repr() in its data-value
attribute, and float() reads a repr back to the same double."""
from __future__ import annotations

import json
import pathlib
import urllib.parse

import pytest

from tests.report_checks import browser  # noqa: F401  (the module's Chromium fixture)
from tests.report_checks import (anomalies_artifact, assert_charts_rendered,
                                 assert_script_by_hash_only, column, evaluation_uris,
                                 run_ids_newest_first, run_page, screenshot, stamp_dirs,
                                 table_metrics, visit)

slow = pytest.mark.slow


@slow
def test_runs_as_expected(pipeline_runs):
    assert pipeline_runs.exit_codes == [0, 0, 2]
    assert len(stamp_dirs(pipeline_runs)) == 3
    for name in stamp_dirs(pipeline_runs):
        assert run_page(pipeline_runs, name).exists(), f"no report for run {name}"
    assert pipeline_runs.index.exists()


@slow
def test_run_report(pipeline_runs, browser, capsys):
    from reports.evaluation_results import read_metrics

    second = stamp_dirs(pipeline_runs)[1]  # judged against the first run's model
    metrics = read_metrics(evaluation_uris(pipeline_runs.metadata_path)[1])
    with visit(browser, run_page(pipeline_runs, second)) as seen:
        page = seen.page
        # Charts: each feature's split chart, the mean weight per value, one per slice feature.
        assert page.locator("figure.split-chart svg").count() >= 5
        assert page.locator("figure.mean-weight-chart svg").count() == 4
        assert page.locator("figure.slice-chart svg").count() == 4
        assert_charts_rendered(page, 13)

        # The slice table holds exactly read_metrics' slices and numbers, baseline beside.
        shown = table_metrics(page, "#slice-table")
        assert set(shown) == {m.slice_name for m in metrics}
        for metric in metrics:
            row = shown[metric.slice_name]
            assert float(row["count"]["value"]) == metric.example_count
            assert float(row["rmse"]["value"]) == metric.rmse
            assert row["rmse"]["text"] == f"{metric.rmse:.4f}"
            assert float(row["mae"]["value"]) == metric.mae
            assert metric.baseline_rmse is not None
            assert float(row["baseline_rmse"]["value"]) == metric.baseline_rmse
        overall = next(m for m in metrics if m.slice_name == "Overall")
        assert page.locator("#headline-rmse").inner_text() == f"{overall.rmse:.4f}"

        # Sorting on click: ascending, then descending; the overall row stays on top.
        header = page.locator("#slice-table th[data-col=rmse]")
        unsorted = column(page, "#slice-table", "rmse")
        header.locator("button").click()
        assert header.get_attribute("aria-sort") == "ascending"
        assert column(page, "#slice-table", "rmse") == sorted(unsorted)
        header.locator("button").click()
        assert header.get_attribute("aria-sort") == "descending"
        assert column(page, "#slice-table", "rmse") == sorted(unsorted, reverse=True)
        page.locator("#slice-table th[data-col=value] button").click()
        assert page.locator("#slice-table tr[data-slice]").first.get_attribute(
            "data-slice") == "Overall"
        assert_script_by_hash_only(page.locator(
            "meta[http-equiv=Content-Security-Policy]").get_attribute("content"))

        # Blessing, push and run facts.
        assert page.locator("#blessed").inner_text() == "yes"
        assert "RMSE at most 1.25 lb" in page.locator("table.checks").inner_text()
        assert "already serves as version" in page.locator("#push-message").inner_text()
        components = page.locator("table.components tr[data-node]").evaluate_all(
            "rows => rows.map(r => r.dataset.node)")
        assert {"DuckDBExampleGen", "StatisticsGen", "Trainer", "Evaluator",
                "ServingPusher"} <= set(components)
        assert "hidden_units" in page.locator("table.hyperparameters").inner_text()
        logdir = page.locator("#tensorboard-logdir").inner_text()
        first = stamp_dirs(pipeline_runs)[0]  # run 2 reused the model run 1 trained
        assert page.locator("#tensorboard-run").inner_text() == first
        assert (pathlib.Path(logdir) / first / "validation").is_dir()
        # Links to the run's other reports resolve; nothing is loaded from elsewhere.
        for href in page.locator("nav.sections a:not([href^='#'])").evaluate_all(
                "links => links.map(a => a.href)"):
            assert pathlib.Path(urllib.parse.urlparse(href).path).exists(), href
        assert page.locator("[src]").count() == 0
        screenshot(seen, "run-report", capsys)
        seen.assert_clean()


@slow
def test_run_stopped_by_anomalies_has_a_report(pipeline_runs, browser, capsys):
    from reports import validation_results

    artifact = anomalies_artifact(pipeline_runs.metadata_path)
    splits = json.loads(artifact.properties["split_names"].string_value
                        if "split_names" in artifact.properties
                        else artifact.custom_properties["split_names"].string_value)
    expected = validation_results.describe(validation_results.read_anomalies(artifact.uri, splits))
    assert expected, "run 3 should have anomalies"
    third = stamp_dirs(pipeline_runs)[2]
    with visit(browser, run_page(pipeline_runs, third)) as seen:
        page = seen.page
        assert page.locator("#anomaly-alert li").all_inner_texts() == [
            line.strip() for line in expected]
        assert "plurality" in page.locator("table.anomalies").inner_text()
        assert page.locator("table.anomalies mark.unexpected").all_inner_texts() == ["6"] * 3
        assert "stopped before the model was trained" in page.locator("#model-status").inner_text()
        assert page.locator("#pushed").inner_text() == "not pushed"
        assert_charts_rendered(page, 5)
        screenshot(seen, "run-report-anomalies", capsys)
        seen.assert_clean()


@slow
def test_index_lists_runs_newest_first_with_links(pipeline_runs, browser, capsys):
    from reports.evaluation_results import OVERALL, read_metrics

    expected_ids = run_ids_newest_first(pipeline_runs.metadata_path)
    rmse = [next(m.rmse for m in read_metrics(uri) if m.slice_name == OVERALL)
            for uri in evaluation_uris(pipeline_runs.metadata_path)]
    with visit(browser, pipeline_runs.index) as seen:
        page = seen.page
        rows = page.locator("#runs-table tbody tr")
        assert rows.evaluate_all("rows => rows.map(r => r.dataset.runId)") == expected_ids
        # Newest first: the anomaly run (no RMSE), then runs 2 and 1.
        shown = page.locator("#runs-table td[data-col=rmse]").evaluate_all(
            "cells => cells.map(c => c.getAttribute('data-value'))")
        assert shown[0] == ""
        assert [float(v) for v in shown[1:]] == list(reversed(rmse))
        assert "anomalies" in rows.nth(0).inner_text()
        hrefs = page.locator("a.run-link").evaluate_all("links => links.map(a => a.href)")
        assert len(hrefs) == 3
        for href in hrefs + page.locator("a.compare-link").evaluate_all(
                "links => links.map(a => a.href)"):
            assert pathlib.Path(urllib.parse.unquote(urllib.parse.urlparse(href).path)).exists()
        assert page.locator("a.compare-link").count() == 1  # run 2 vs run 1
        screenshot(seen, "index", capsys)
        seen.assert_clean()
        page.locator("a.run-link").nth(1).click()
        page.wait_for_load_state("load")
        assert page.locator("#run-id").inner_text() == expected_ids[1]
        seen.assert_clean()


@slow
def test_compare_command(pipeline_runs, browser, capsys):
    from reports.evaluation_results import read_metrics
    from reports import cli

    first, second, _ = stamp_dirs(pipeline_runs)
    assert cli.main(["compare", first, second, "--metadata-path",
                     str(pipeline_runs.metadata_path), "--out",
                     str(pipeline_runs.reports_dir)]) == 0
    page_uri = capsys.readouterr().out.strip().splitlines()[-1]
    path = pathlib.Path(urllib.parse.unquote(urllib.parse.urlparse(page_uri).path))
    a, b = (read_metrics(uri) for uri in evaluation_uris(pipeline_runs.metadata_path))
    with visit(browser, path) as seen:
        shown = table_metrics(seen.page, "#compare-table")
        assert set(shown) == {m.slice_name for m in a}
        for metric in a:
            assert float(shown[metric.slice_name]["rmse_a"]["value"]) == metric.rmse
        for metric in b:
            assert float(shown[metric.slice_name]["rmse_b"]["value"]) == metric.rmse
        assert_charts_rendered(seen.page, 4)
        screenshot(seen, "compare", capsys)
        seen.assert_clean()


@slow
def test_regenerate_any_run_elsewhere_without_warehouse(pipeline_runs, tmp_path, capsys):
    from reports import cli

    first = stamp_dirs(pipeline_runs)[0]
    assert cli.main(["run", "--run-id", first, "--no-warehouse", "--metadata-path",
                     str(pipeline_runs.metadata_path), "--out", str(tmp_path)]) == 0
    written = pathlib.Path(urllib.parse.urlparse(
        capsys.readouterr().out.strip().splitlines()[-1]).path)
    assert written.parent.parent == tmp_path / "runs" and written.name == "report.html"
    html = written.read_text()
    assert "Left out on request" in html and "mean-weight-chart" not in html
    assert (tmp_path / "index.html").exists()
    assert cli.main(["run", "--run-id", "no-such-run", "--metadata-path",
                     str(pipeline_runs.metadata_path), "--out", str(tmp_path)]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err
