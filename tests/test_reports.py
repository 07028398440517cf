"""The analyst reports as a person sees them: opened from disk in headless Chromium with the
network blocked, checked against the numbers TFMA and ML Metadata hold, and screenshotted.

Numbers are compared exactly: a page keeps each one as Python's repr() in its data-value
attribute, and float() reads a repr back to the same double."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import time
import urllib.parse
from typing import Any, Dict, Iterator, List

import pytest

from tests.browser import SCREENSHOTS, launched_chromium

slow = pytest.mark.slow


# --------------------------------------------------------------------------------------------
# What the pipeline recorded, read straight from ML Metadata and TFMA (not through reports/).
# --------------------------------------------------------------------------------------------

def _store(metadata_path: pathlib.Path):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def run_ids_newest_first(metadata_path: pathlib.Path) -> List[str]:
    runs = _store(metadata_path).get_contexts_by_type("pipeline_run")
    return [c.name for c in sorted(runs, key=lambda c: c.create_time_since_epoch, reverse=True)]


def evaluation_uris(metadata_path: pathlib.Path) -> List[str]:
    """The Evaluator's outputs, oldest first (runs 1 and 2; run 3 never got there)."""
    artifacts = _store(metadata_path).get_artifacts_by_type("ModelEvaluation")
    return [a.uri for a in sorted(artifacts, key=lambda a: a.id)]


def anomalies_artifact(metadata_path: pathlib.Path):
    artifacts = _store(metadata_path).get_artifacts_by_type("ExampleAnomalies")
    return max((a for a in artifacts if "ExampleValidator" in a.uri), key=lambda a: a.id)


# --------------------------------------------------------------------------------------------
# A browser that can only read files.
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Visit:
    """One page load with everything that went wrong while it loaded."""

    page: Any
    console_errors: List[str] = dataclasses.field(default_factory=list)
    failed_requests: List[str] = dataclasses.field(default_factory=list)
    blocked_requests: List[str] = dataclasses.field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.blocked_requests, f"the page tried the network: {self.blocked_requests}"
        assert not self.failed_requests, f"failed requests: {self.failed_requests}"
        assert not self.console_errors, f"console errors: {self.console_errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium("the reports in a browser")


@contextlib.contextmanager
def visit(browser: Any, path: pathlib.Path) -> Iterator[Visit]:
    """Opens `path` in a fresh context where every non-file request is aborted and counted."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Visit(page)

    def only_files(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            seen.blocked_requests.append(url)
            route.abort()

    context.route("**/*", only_files)
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.console_errors.append(str(e)))
    page.on("requestfailed", lambda r: seen.failed_requests.append(r.url))
    page.goto(pathlib.Path(path).resolve().as_uri(), wait_until="load")
    try:
        yield seen
    finally:
        context.close()


def screenshot(seen: Visit, name: str, capsys: pytest.CaptureFixture) -> pathlib.Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"{name}.png"
    seen.page.screenshot(path=str(out), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {out}")
    return out


def assert_charts_rendered(page: Any, minimum: int) -> int:
    """Every chart is an SVG with drawn content and a real size on screen."""
    charts = page.locator("figure.chart svg")
    count = charts.count()
    assert count >= minimum, f"{count} charts, expected at least {minimum}"
    for index in range(count):
        chart = charts.nth(index)
        box = chart.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 60, f"chart {index} has no size"
        drawn = chart.evaluate("svg => svg.querySelectorAll('path, use, rect, text').length")
        assert drawn > 5, f"chart {index} is empty"
    return count


def column(page: Any, table: str, name: str, body: str = "tbody.rows") -> List[float]:
    return [float(v) for v in page.locator(f"{table} {body} td[data-col={name}]")
            .evaluate_all("cells => cells.map(c => c.getAttribute('data-value'))")]


def table_metrics(page: Any, table: str) -> Dict[str, Dict[str, str]]:
    """slice -> {column: data-value} of every row of a slice table."""
    return page.locator(f"{table} tr[data-slice]").evaluate_all(
        """rows => Object.fromEntries(rows.map(r => [r.dataset.slice, Object.fromEntries(
             Array.from(r.querySelectorAll('td[data-col]')).map(c => [c.dataset.col, {
               value: c.getAttribute('data-value'), text: c.textContent.trim()}]))]))""")


def run_page(runs, name: str) -> pathlib.Path:
    return runs.reports_dir / name / "report.html"


def stamp_dirs(runs) -> List[str]:
    return sorted(p.name for p in runs.reports_dir.glob("2*"))


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

@slow
def test_runs_as_expected(pipeline_runs):
    assert pipeline_runs.exit_codes == [0, 0, 2]
    assert len(stamp_dirs(pipeline_runs)) == 3
    for name in stamp_dirs(pipeline_runs):
        assert run_page(pipeline_runs, name).exists(), f"no report for run {name}"
    assert pipeline_runs.index.exists()


@slow
def test_run_report(pipeline_runs, browser, capsys):
    from pipelines.evaluation import read_metrics

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
        assert "below 1.25" in page.locator("table.checks").inner_text()
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
    from pipelines.components import anomaly_gate

    artifact = anomalies_artifact(pipeline_runs.metadata_path)
    splits = json.loads(artifact.properties["split_names"].string_value
                        if "split_names" in artifact.properties
                        else artifact.custom_properties["split_names"].string_value)
    expected = anomaly_gate.describe(anomaly_gate.read_anomalies(artifact.uri, splits))
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
    from pipelines.evaluation import OVERALL, read_metrics

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
    from pipelines.evaluation import read_metrics
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


def test_unreachable_warehouse_is_a_note_not_an_error(tmp_path):
    from reports import data_section

    views, note = data_section.mean_weight_views((str(tmp_path / "gone.duckdb"), None))
    assert views == {} and "not reachable" in note


def test_help_names_every_command(capsys):
    from reports import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("run", "index", "compare"):
        assert command in text
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "--latest" in capsys.readouterr().out


def test_the_browser_harness_sees_network_use_and_errors(browser, tmp_path):
    """Guards the checks above: a page that reaches out or throws must not pass as clean."""
    page = tmp_path / "leaky.html"
    page.write_text('<!DOCTYPE html><img src="https://example.com/pixel.png">'
                    '<script>undefinedFunction()</script>')
    with visit(browser, page) as seen:
        # Browser events reach Python asynchronously: wait for them, not for a fixed time.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                seen.blocked_requests and seen.console_errors):
            seen.page.wait_for_timeout(50)
        assert seen.blocked_requests == ["https://example.com/pixel.png"]
        assert any("undefinedFunction" in error for error in seen.console_errors)
        with pytest.raises(AssertionError):
            seen.assert_clean()


def assert_script_by_hash_only(policy: str) -> None:
    """script-src allows the pages' one script by its hash, and no other inline script."""
    from reports.pages import page_script

    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())
    assert "'unsafe-inline'" not in directives["script-src"]
    assert directives["script-src"] == f"'{page_script()[1]}'"


def test_pages_run_their_script_and_no_injected_one(browser, tmp_path):
    """The sorting script runs under the page's policy; an inline script slipped in does not."""
    from reports.pages import environment

    html = environment().from_string(
        '{% extends "base.html.j2" %}{% block body %}<table class="sortable" id="t"><thead>'
        '<tr><th><button>n</button></th></tr></thead><tbody class="rows">'
        '<tr><td data-value="2">2</td></tr><tr><td data-value="1">1</td></tr></tbody></table>'
        '<script>document.title = "injected";</script>{% endblock %}').render(title="csp")
    page_path = tmp_path / "csp.html"
    page_path.write_text(html)
    with visit(browser, page_path) as seen:
        seen.page.locator("#t th button").click()
        assert seen.page.locator("#t td").all_inner_texts() == ["1", "2"]
        assert seen.page.title() == "csp"
        assert any("Content Security Policy" in e for e in seen.console_errors)
        assert not seen.blocked_requests and not seen.failed_requests
    assert_script_by_hash_only(html.split('Content-Security-Policy" content="')[1].split('"')[0])


def test_threshold_checks_say_what_decided():
    from pipelines.config import EvaluationConfig
    from pipelines.evaluation import SliceMetrics, eval_config
    from reports.facts import threshold_checks, thresholds_of

    config = eval_config(EvaluationConfig(rmse_upper_bound=1.1, max_rmse_increase=0.01,
                                          gate_slices=True))
    metrics = [SliceMetrics("Overall", 100, 1.05, 0.8),
               SliceMetrics("plurality=Twins(2)", 5, 1.4, 1.0),
               SliceMetrics("plurality=Single(1)", 95, 1.0, 0.8),
               SliceMetrics("mother_age=<18", 10, 0.9, 0.7)]
    checks = threshold_checks(thresholds_of(config), metrics)
    bound, change = (c for c in checks if c.where == "overall" and "RMSE" in c.rule)
    assert bound.rule == "RMSE below 1.1 lb" and bound.passed and bound.value == 1.05
    # No baseline: the change threshold is shown as not applied, not as passed.
    assert "last blessed" in change.rule and change.passed is None
    twins = next(c for c in checks if c.where.startswith("worst slice of plurality"))
    assert twins.where.endswith("(plurality=Twins(2))")
    assert twins.passed is False and twins.value == 1.4

    outside = next(c for c in checks if "possible weights" in c.rule)
    assert outside.passed is None  # these metrics do not say how many were impossible
    impossible = [SliceMetrics("Overall", 100, 1.05, 0.8, outside_label_range=2.0)]
    outside = next(c for c in threshold_checks(thresholds_of(config), impossible)
                   if "possible weights" in c.rule)
    assert outside.passed is False and outside.value == 2.0 and outside.where == "overall"

    with_baseline = [SliceMetrics("Overall", 100, 1.05, 0.8, baseline_rmse=1.0)]
    change = next(c for c in threshold_checks(thresholds_of(config), with_baseline)
                  if "last blessed" in c.rule)
    # 1.05 - 1.0 is exact in binary floating point (Sterbenz: within a factor 2 of each other).
    assert change.passed is False and change.value == 1.05 - 1.0


def test_tuned_hyperparameters_override_the_configured_ones(tmp_path):
    from modules.hparams import HyperParameters, search_space
    from reports import facts

    tuned = search_space(HyperParameters())
    tuned.values["hidden_units"] = "128,64"
    tuned.values["learning_rate"] = 0.02
    (tmp_path / facts.BEST_HYPERPARAMETERS_FILE).write_text(json.dumps(tuned.get_config()))
    best = facts._read_best(str(tmp_path))
    run = facts.RunFacts(record=None, status="succeeded", succeeded=True,
                         hyperparameters=HyperParameters().to_dict(), tuned_hyperparameters=best)
    assert run.effective_hyperparameters["hidden_units"] == "128,64"
    assert run.effective_hyperparameters["learning_rate"] == 0.02
    assert run.effective_hyperparameters["epochs"] == HyperParameters().epochs
