"""Honest report views: intervals over months, changes inside the noise shown as such, shared
histogram bins, calibration and residuals, and a layout that holds at 390 px and on a desktop.

The page checks open the real run reports of the `pipeline_runs` fixture in headless Chromium
with every non-file request aborted; screenshots of the new views go to the test's tmp dir.
"""
from __future__ import annotations

import pathlib
from typing import Any, List

import numpy as np
import pytest

from tests.report_checks import (assert_charts_rendered, browser, evaluation_uris,  # noqa: F401
                                 run_page, stamp_dirs, visit)

slow = pytest.mark.slow
WIDTHS = (390, 1280)


# --------------------------------------------------------------------------------------------
# The arithmetic, on data whose answer is known.
# --------------------------------------------------------------------------------------------

def _predictions(months: int, per_month: int, noise: float, seed: int = 1, shift: float = 0.0):
    from reports.predictions import Predictions

    rng = np.random.default_rng(seed)
    size = months * per_month
    label = rng.normal(7.0, 1.0, size)
    candidate = label + rng.normal(0.0, noise, size)
    baseline = label + rng.normal(0.0, noise, size) + shift
    plurality = np.array(["Single(1)"] * (size - 3) + ["Quadruplets(4)"] * 3, dtype=object)
    return Predictions(label=label, candidate=candidate, baseline=baseline,
                       month=np.repeat(np.arange(months) * 7919, per_month),
                       slices={"plurality": plurality},
                       gestation_weeks=np.full(size, 39.0))


def test_month_weights_draw_every_resample_of_the_months():
    from reports import uncertainty

    weights = uncertainty.month_weights(12, resamples=50)
    assert weights.shape == (50, 12)
    assert (weights.sum(axis=1) == 12).all()


def test_intervals_cover_the_point_estimate_and_shrink_with_data():
    from reports import uncertainty

    small = uncertainty.slice_intervals(_predictions(10, 20, 1.0))["Overall"]
    large = uncertainty.slice_intervals(_predictions(40, 200, 1.0))["Overall"]
    for found, predictions in ((small, _predictions(10, 20, 1.0)),
                               (large, _predictions(40, 200, 1.0))):
        error = predictions.candidate - predictions.label
        assert found.rmse.contains(float(np.sqrt(np.mean(error ** 2))))
        assert found.months == len(np.unique(predictions.month))
    # 40x the months and 10x the births per month: a far narrower interval.
    assert (large.rmse.high - large.rmse.low) < (small.rmse.high - small.rmse.low) / 3


def test_a_slice_from_a_few_months_gets_no_interval():
    from reports import uncertainty

    found = uncertainty.slice_intervals(_predictions(12, 30, 1.0))
    quads = found["plurality=Quadruplets(4)"]
    assert quads.examples == 3 and quads.months < uncertainty.MIN_MONTHS
    assert quads.rmse is None and quads.delta_rmse is None


def test_changes_inside_the_noise_are_not_coloured():
    from reports import uncertainty
    from reports.model_section import delta_cell

    same = uncertainty.slice_intervals(_predictions(20, 50, 1.0))["Overall"]
    worse = uncertainty.slice_intervals(_predictions(20, 50, 0.3, shift=1.0))["Overall"]
    assert same.delta_rmse.contains(0.0)
    assert delta_cell(1.0, 1.01, same.delta_rmse)["sign"] == "noise"
    # The baseline was shifted by a pound: the candidate is clearly better, on every resample.
    assert worse.delta_rmse.high < 0
    assert delta_cell(0.3, 1.04, worse.delta_rmse)["sign"] == "better"
    # No interval at all (a 14-example slice, or none computed): noise, never a colour.
    assert delta_cell(1.2, 1.2158, None)["sign"] == "noise"
    assert delta_cell(1.2, 1.2, None)["sign"] == ""


def test_deciles_split_the_predictions_evenly():
    from reports import uncertainty

    predicted = np.arange(100, dtype=float)
    rows = uncertainty.deciles(predicted, predicted + 1.0)
    assert [n for _, _, n in rows] == [10] * 10
    assert all(actual == pytest.approx(mean + 1.0) for mean, actual, _ in rows)


def test_shared_edges_hold_every_split():
    from reports.split_histograms import shared_edges

    train, evaluation = np.array([1.0, 5.0, 9.0]), np.array([0.5, 12.0])
    edges = shared_edges([train, evaluation], integer=False)
    assert edges[0] == 0.5 and edges[-1] == 12.0
    weeks = shared_edges([np.array([20, 30]), np.array([25, 44])], integer=True)
    assert list(weeks[:2]) == [19.5, 20.5] and weeks[-1] == 44.5


# --------------------------------------------------------------------------------------------
# The real runs.
# --------------------------------------------------------------------------------------------

@slow
def test_eval_predictions_reproduce_tfma(pipeline_runs):
    """The recomputed predictions give TFMA's own counts and RMSE on every slice."""
    from reports.evaluation_results import read_metrics
    from reports import facts, mlmd, predictions, uncertainty

    record = mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))[1]
    run = facts.collect(record)
    found = predictions.compute(run.examples_uri, run.model_uri)
    metrics = read_metrics(evaluation_uris(pipeline_runs.metadata_path)[1])
    masks = dict(uncertainty.slice_masks(found))
    assert set(masks) == {m.slice_name for m in metrics}
    error = found.candidate - found.label
    for metric in metrics:
        mask = masks[metric.slice_name]
        assert mask.sum() == metric.example_count, metric.slice_name
        # float32 predictions summed in float64 here, in float32 batches by TFMA.
        assert np.sqrt(np.mean(error[mask] ** 2)) == pytest.approx(metric.rmse, rel=1e-4)


def _overlaps(boxes: List[Any]) -> List[tuple]:
    found = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
                    and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]):
                found.append((a, b))
    return found


def _boxes(page: Any, selector: str) -> List[Any]:
    return page.locator(selector).evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect();"
        " return {x: r.x, y: r.y, width: r.width, height: r.height}; })")


def _tick_label_boxes(chart: Any) -> List[Any]:
    """One box per x tick label (a label of several lines is one box)."""
    return chart.locator("g[id*='xtick_']").evaluate_all(
        """groups => groups.map(g => {
             const rects = Array.from(g.querySelectorAll('text')).map(t => t.getBoundingClientRect());
             if (!rects.length) { return null; }
             const x = Math.min(...rects.map(r => r.left)), y = Math.min(...rects.map(r => r.top));
             return {x: x, y: y, width: Math.max(...rects.map(r => r.right)) - x,
                     height: Math.max(...rects.map(r => r.bottom)) - y}; }).filter(b => b)""")


def _assert_layout(page: Any, width: int) -> None:
    sizes = page.evaluate("[document.documentElement.scrollWidth,"
                          " document.documentElement.clientWidth]")
    assert sizes[0] <= sizes[1], f"the page scrolls sideways at {width} px: {sizes}"
    cards = _boxes(page, "#headline .card")
    assert not _overlaps(cards), f"cards overlap at {width} px"
    spilled = page.locator("#headline .card").evaluate_all(
        "cards => cards.filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent)")
    assert not spilled, f"text runs out of its card at {width} px: {spilled}"
    for chart in ("figure.split-chart", "figure.slice-chart"):
        for index in range(page.locator(chart).count()):
            ticks = _tick_label_boxes(page.locator(chart).nth(index))
            assert not _overlaps(ticks), f"{chart} #{index}: axis labels overlap at {width} px"


@slow
def test_run_report_shows_intervals_calibration_residuals(pipeline_runs, browser, capsys,
                                                           tmp_path):
    second = stamp_dirs(pipeline_runs)[1]
    for width in WIDTHS:
        with visit(browser, run_page(pipeline_runs, second)) as seen:
            page = seen.page
            page.set_viewport_size({"width": width, "height": 900})
            _assert_layout(page, width)
            if width == WIDTHS[-1]:
                lows = page.locator("#slice-table td[data-col=rmse_ci]").evaluate_all(
                    "cells => cells.map(c => [c.dataset.low, c.dataset.high,"
                    " c.parentElement.querySelector('td[data-col=rmse]').dataset.value])")
                with_interval = [(float(a), float(b), float(v)) for a, b, v in lows if a]
                assert len(with_interval) >= len(lows) // 2
                assert all(a <= v <= b for a, b, v in with_interval)
                assert "bootstrap resamples" in page.locator("#interval-method").inner_text()
                # A change is coloured only where its interval leaves out zero.
                for sign, low, high in page.locator("#slice-table td[data-col=delta_rmse]") \
                        .evaluate_all("cells => cells.map(c => [c.dataset.sign,"
                                      " c.nextElementSibling.dataset.low,"
                                      " c.nextElementSibling.dataset.high])"):
                    if sign in ("better", "worse"):
                        assert low and (float(low) > 0 or float(high) < 0)
                assert page.locator("figure.slice-chart svg").first.evaluate(
                    "svg => svg.textContent").count("95% interval") == 1
                assert page.locator("figure.calibration-chart svg").count() == 1
                assert page.locator("figure.residual-chart svg").count() == 1
                assert page.locator("table.calibration tbody tr").count() == 10
                assert "same bins" in page.locator(
                    "#feature-weight_pounds figcaption").first.inner_text()
                assert_charts_rendered(page, 15)
            shot = tmp_path / f"run-report-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            for name in ("calibration-chart", "residual-chart"):
                page.locator(f"figure.{name}").screenshot(path=str(tmp_path / f"{name}.png"))
            page.locator("#feature-weight_pounds").screenshot(
                path=str(tmp_path / f"shared-bins-{width}.png"))
            seen.assert_clean()
    with capsys.disabled():
        print(f"\nscreenshots: {tmp_path}")


@slow
def test_index_dates_stay_on_one_line(pipeline_runs, browser, tmp_path, capsys):
    for width in WIDTHS:
        with visit(browser, pipeline_runs.index) as seen:
            page = seen.page
            page.set_viewport_size({"width": width, "height": 900})
            sizes = page.evaluate("[document.documentElement.scrollWidth,"
                                  " document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], f"the index scrolls sideways at {width} px"
            lines = page.locator("#runs-table td[data-col=started]").evaluate_all(
                """cells => cells.map(c => { const r = document.createRange();
                     r.selectNodeContents(c);  // the text's own line boxes, not the row's height
                     return new Set(Array.from(r.getClientRects()).map(b => Math.round(b.top))).size; })""")
            assert lines and max(lines) <= 1, f"dates wrap at {width} px: {lines}"
            page.screenshot(path=str(tmp_path / f"index-{width}.png"), full_page=True)
            seen.assert_clean()
    with capsys.disabled():
        print(f"\nscreenshots: {tmp_path}")


@slow
def test_pushed_version_carries_a_model_card(pipeline_runs, browser, capsys, tmp_path):
    import json

    from reports.evaluation_results import read_metrics
    from reports import mlmd
    from reports.model_card import CARD_HTML, CARD_JSON, SCHEMA_VERSION

    first = stamp_dirs(pipeline_runs)[0]  # the run that pushed
    record = next(r for r in mlmd.list_runs(mlmd.open_store(pipeline_runs.metadata_path))
                  if r.reports_dir is not None and r.reports_dir.name == first)
    destination = pathlib.Path(record.output("ServingPusher", "pushed_model")
                               .properties["pushed_destination"])
    card = json.loads((destination / CARD_JSON).read_text())
    assert card["schema_version"] == SCHEMA_VERSION
    assert set(card) >= {"model_details", "model_parameters", "quantitative_analysis",
                         "considerations"}
    assert card["model_details"]["version"]["name"] == destination.name
    fingerprint = record.component("Trainer").parameters["source_fingerprint"]
    assert card["babyweight"]["training_code_fingerprint"] == fingerprint
    assert fingerprint in card["model_details"]["documentation"]
    assert card["babyweight"]["data_range"].startswith("spans ")
    data = {d["name"]: d["description"] for d in card["model_parameters"]["data"]}
    assert "the model fitted on" in data["train split"]
    assert "the model chosen on" in data["test split"]
    assert "the model gated and measured on" in data["eval split"]
    assert all(f"ExampleGen read the table's {card['babyweight']['data_range']}" in text
               for text in data.values()), data
    shown = {(m["slice"], m["type"]): m for m in card["quantitative_analysis"][
        "performance_metrics"]}
    for metric in read_metrics(evaluation_uris(pipeline_runs.metadata_path)[0]):
        entry = shown[(metric.slice_name, "RMSE (lb)")]
        assert float(entry["value"]) == pytest.approx(metric.rmse, abs=5e-5)
    overall = shown[("Overall", "RMSE (lb)")]["confidence_interval"]
    assert float(overall["lower_bound"]) <= float(shown[("Overall", "RMSE (lb)")]["value"]) \
        <= float(overall["upper_bound"])
    assert any("RMSE at most 1.25" in t["description"]
               for t in card["considerations"]["tradeoffs"])
    assert any("Triplets" in l["description"] or "Quadruplets" in l["description"]
               for l in card["considerations"]["limitations"])
    with visit(browser, run_page(pipeline_runs, first)) as seen:
        link = seen.page.locator(f"nav.sections a[href$='{CARD_HTML}']")
        assert link.count() == 1
        link.click()
        seen.page.wait_for_load_state("load")
        for width in WIDTHS:
            seen.page.set_viewport_size({"width": width, "height": 900})
            sizes = seen.page.evaluate("[document.documentElement.scrollWidth,"
                                       " document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], f"the card scrolls sideways at {width} px"
            seen.page.screenshot(path=str(tmp_path / f"model-card-{width}.png"), full_page=True)
        assert seen.page.locator("#card-metrics tr[data-slice]").count() == len(shown)
        assert fingerprint in seen.page.locator("#card-fingerprint").inner_text()
        seen.assert_clean()
    assert (destination / CARD_JSON).with_suffix(".html").exists()
    with capsys.disabled():
        print(f"\nscreenshots: {tmp_path}")


@slow
def test_eda_page_renders_every_section_offline(pipeline_runs, browser, tmp_path, capsys):
    from reports.eda_statistics import FACETS_FILE_SUFFIX

    first = stamp_dirs(pipeline_runs)[0]
    eda = pipeline_runs.reports_dir / first / "eda.html"
    with visit(browser, eda) as seen:
        page = seen.page
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(tmp_path / f"eda-{width}.png"), full_page=True)
        # The train-vs-eval comparison is on the page itself, drawn with no network.
        tables = page.locator("table.split-statistics")
        assert tables.count() >= 5
        for index in range(tables.count()):
            splits = tables.nth(index).locator("tbody td:first-child").all_inner_texts()
            assert splits == ["train", "eval"]
        assert page.locator("section.feature figure.chart svg").count() >= 4
        link = page.locator("#facets-link a")
        assert "needs a network connection" in page.locator("#facets-link").inner_text()
        assert link.get_attribute("href") == f"eda{FACETS_FILE_SUFFIX}"
        assert page.locator("script, iframe").count() == 0
        seen.assert_clean()
    assert (eda.parent / f"eda{FACETS_FILE_SUFFIX}").exists()
    with capsys.disabled():
        print(f"\nscreenshots: {tmp_path}")
