"""The prediction page as a person uses it: headless Chromium against a real server process.

The browser may only talk to the server's loopback origin (anything else is aborted and
counted); every test fills the form the way a person does (by the fields' labels), submits, and
checks what the page shows against the server's own answers and the feature declaration.
Screenshots of each state go to runs/screenshots/prediction_page_*.png.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from typing import Any, Dict, Iterator, List, Tuple

import httpx
import numpy as np
import pytest

from modules import features
from serving import ui
from tests.tolerances import prediction_abs
from tests.serving_fixtures import MODEL_NAME, RunningServer
from tests.browser import SCREENSHOTS, launched_chromium

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)

GRAMS_PER_POUND = 453.59237
WHAT_IF = list(range(28, 43))
# Chromium logs every non-2xx fetch like this; the error test expects exactly one, for its 400.
HTTP_400_LOG = "Failed to load resource: the server responded with a status of 400"


@dataclasses.dataclass
class PageVisit:
    """The page, and everything it sent or complained about."""

    page: Any
    console_errors: List[str] = dataclasses.field(default_factory=list)
    blocked_requests: List[str] = dataclasses.field(default_factory=list)
    predict_bodies: List[Dict[str, Any]] = dataclasses.field(default_factory=list)

    def assert_clean(self, expected_console: Tuple[str, ...] = ()) -> None:
        assert not self.blocked_requests, f"the page tried the network: {self.blocked_requests}"
        unexpected = [e for e in self.console_errors if not e.startswith(expected_console)]
        assert not unexpected, f"console errors: {unexpected}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium("the prediction page")


@contextlib.contextmanager
def open_page(browser: Any, server: RunningServer) -> Iterator[PageVisit]:
    """The page in a fresh context that can reach only the server's own origin."""
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    seen = PageVisit(page)
    origin = server.url + "/"

    def only_the_server(route: Any) -> None:
        request = route.request
        if not request.url.startswith(origin):
            seen.blocked_requests.append(request.url)
            route.abort()
            return
        if request.method == "POST" and request.url.endswith(":predict"):
            seen.predict_bodies.append(json.loads(request.post_data))
        route.continue_()

    context.route("**/*", only_the_server)
    page.on("console", lambda m: seen.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: seen.console_errors.append(str(e)))
    page.goto(origin, wait_until="load")
    try:
        yield seen
    finally:
        context.close()


def screenshot(seen: PageVisit, name: str, capsys: pytest.CaptureFixture) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"prediction_page_{name}.png"
    seen.page.screenshot(path=str(out), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot: {out}")


def fill_and_submit(page: Any, sex: str, age: str, plurality: str, weeks: str) -> None:
    """What a person does: pick, type, choose, press the button (all found by their labels)."""
    page.get_by_label(sex, exact=True).check()
    page.get_by_label("Mother's age").fill(age)
    page.get_by_label("Plurality").select_option(label=plurality)
    page.get_by_label("Gestation").fill(weeks)
    page.get_by_role("button", name="Predict the weight").click()


def wait_for_answer(page: Any) -> None:
    page.locator("#what-if svg circle.point").nth(len(WHAT_IF) - 1).wait_for(timeout=20_000)


def server_predictions(server: RunningServer, instances: List[Dict[str, Any]]) -> List[float]:
    response = httpx.post(server.predict_url(), json={"instances": instances}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def check_answer(seen: PageVisit, server: RunningServer, instance: Dict[str, Any]) -> float:
    """The shown weight is the server's, in a plausible range, in consistent units; the
    what-if chart came from one batched call and has one point per week."""
    page = seen.page
    assert [len(b["instances"]) for b in seen.predict_bodies] == [1, len(WHAT_IF)]
    assert seen.predict_bodies[0]["instances"] == [instance]
    strip = seen.predict_bodies[1]["instances"]
    assert [i[features.GESTATION_WEEKS.name] for i in strip] == WHAT_IF
    assert all({**i, features.GESTATION_WEEKS.name: 0} ==
               {**instance, features.GESTATION_WEEKS.name: 0} for i in strip)

    pounds = float(page.locator("#weight-lb").get_attribute("data-value"))
    assert 1 <= pounds <= 15, f"implausible weight {pounds} lb"
    # The same row, possibly batched with other requests: see tests.tolerances.prediction_abs.
    assert pounds == pytest.approx(server_predictions(server, [instance])[0], rel=0,
                                   abs=prediction_abs())
    assert page.locator("#weight-lb").inner_text() == f"{pounds:.2f}"
    grams = float(page.locator("#weight-g").get_attribute("data-value"))
    # The page multiplies the same two doubles, and String() round-trips: exactly equal.
    assert grams == pounds * GRAMS_PER_POUND
    assert page.locator("#weight-g").inner_text() == f"{round(grams):,}"
    assert page.locator("#model-version").inner_text() == "1"  # the shared server's version

    chart = page.locator("#what-if svg")
    box = chart.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100, "the chart has no size"
    points = chart.locator("circle.point")
    assert points.count() == len(WHAT_IF)
    assert len(chart.locator("polyline").get_attribute("points").split()) == len(WHAT_IF)
    shown = [float(v) for v in points.evaluate_all("cs => cs.map(c => c.dataset.value)")]
    assert shown == pytest.approx(server_predictions(server, strip), rel=0, abs=prediction_abs())
    return pounds


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

def test_page_is_served_offline_ready(shared_server: RunningServer):
    """GET / is HTML with a strict CSP, its assets come from the server, and it is documented."""
    with httpx.Client(base_url=shared_server.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert "http" not in page.text.replace(shared_server.url, "")  # nothing absolute
        for name, kind in (("app.js", "javascript"), ("style.css", "text/css"),
                           ("favicon.svg", "image/svg+xml")):
            asset = client.get(f"/ui/{name}")
            assert asset.status_code == 200 and kind in asset.headers["content-type"]
            assert f"/ui/{name}?v=" in page.text
        assert "/" in client.get("/openapi.json").json()["paths"]
        predicted = client.post(f"/v1/models/{MODEL_NAME}:predict",
                                json={"instances": [{"mother_age": 26, "gestation_weeks": 39,
                                                     "plurality": "Single(1)"}]})
        assert predicted.headers[ui.VERSION_HEADER] == "1"
        assert list(predicted.json()) == ["predictions"]  # the body stays TF Serving's


def test_form_limits_come_from_the_declaration(browser, shared_server: RunningServer, capsys):
    """Options, values, min/max and defaults are the declaration's; the browser enforces them."""
    with open_page(browser, shared_server) as seen:
        page = seen.page
        radios = page.locator("input[name=is_male]")
        assert radios.evaluate_all("rs => rs.map(r => r.value)") == \
            list(features.IS_MALE.vocabulary)
        assert page.get_by_label("Male", exact=True).is_checked()
        assert page.get_by_label("Unknown (no ultrasound)").get_attribute("value") == \
            features.IS_MALE_UNKNOWN
        plurality = page.get_by_label("Plurality")
        assert plurality.locator("option").evaluate_all("os => os.map(o => o.value)") == \
            list(features.PLURALITY.vocabulary)
        assert plurality.input_value() == features.PLURALITY_NAMES[0]
        assert plurality.locator("option", has_text="Multiple, unknown count") \
            .get_attribute("value") == features.PLURALITY_MULTIPLE_UNKNOWN
        for feature, label, default in ((features.MOTHER_AGE, "Mother's age", "26"),
                                        (features.GESTATION_WEEKS, "Gestation", "39")):
            box = page.get_by_label(label)
            assert box.get_attribute("min") == str(feature.min_value)
            assert box.get_attribute("max") == str(feature.max_value)
            assert box.input_value() == default
            assert page.locator(f"#{feature.name}-hint").inner_text() == \
                f"{feature.min_value}\u2013{feature.max_value} {ui.UNITS[feature.name]}"
        assert page.locator("#what-if").get_attribute("data-values") == \
            ",".join(map(str, WHAT_IF))
        screenshot(seen, "form", capsys)

        # The browser itself refuses 61: nothing is sent.
        page.get_by_label("Mother's age").fill("61")
        page.get_by_role("button", name="Predict the weight").click()
        assert page.get_by_label("Mother's age").evaluate("e => e.validity.rangeOverflow")
        page.wait_for_timeout(300)
        assert seen.predict_bodies == []
        seen.assert_clean()


def test_prediction_with_chart_and_version(browser, shared_server: RunningServer, capsys):
    with open_page(browser, shared_server) as seen:
        fill_and_submit(seen.page, "Male", "26", "Single", "39")
        wait_for_answer(seen.page)
        instance = {"is_male": features.IS_MALE_TRUE, "mother_age": 26,
                    "plurality": features.PLURALITY_NAMES[0], "gestation_weeks": 39}
        check_answer(seen, shared_server, instance)
        entered = seen.page.locator("#what-if svg circle.entered")
        assert entered.count() == 1 and entered.get_attribute("data-week") == "39"
        screenshot(seen, "result", capsys)
        seen.assert_clean()


def test_server_side_error_shows_next_to_the_field(browser, shared_server: RunningServer,
                                                    capsys):
    """With the browser's own check bypassed, the server's 400 names the field, in words."""
    with open_page(browser, shared_server) as seen:
        page = seen.page
        page.evaluate("document.getElementById('predict-form').noValidate = true")
        with page.expect_response(lambda r: r.url.endswith(":predict")) as answer:
            fill_and_submit(page, "Female", "61", "Twins", "36")
        assert answer.value.status == 400
        assert answer.value.json() == {
            "error": "instances[0].mother_age: 61 is outside the valid range 10..60"}

        error = page.locator("#field-mother_age .field-error")
        error.wait_for(state="visible")
        assert error.inner_text() == ("Mother's age must be between 10 and 60 years; "
                                      "61 is outside that range.")
        assert page.get_by_label("Mother's age").get_attribute("aria-invalid") == "true"
        assert page.evaluate("document.activeElement.id") == "mother_age"
        assert page.locator(".field-error:visible").count() == 1
        assert page.locator("#form-error").is_hidden()
        assert page.locator("#result").is_hidden() and page.locator("#what-if").is_hidden()
        assert len(seen.predict_bodies) == 1  # no what-if call for a refused entry
        screenshot(seen, "age_error", capsys)

        # Correcting the age clears the mark at once, and the next submit answers.
        page.get_by_label("Mother's age").fill("30")
        assert error.is_hidden()
        page.get_by_role("button", name="Predict the weight").click()
        wait_for_answer(page)
        assert page.locator("#model-version").inner_text() == "1"
        seen.assert_clean(expected_console=(HTTP_400_LOG,))
        assert sum(e.startswith(HTTP_400_LOG) for e in seen.console_errors) == 1


def test_unknown_sex_and_unknown_multiple(browser, shared_server: RunningServer, capsys):
    """No ultrasound: 'Unknown' sex and 'Multiple(2+)' go to the server and get an answer."""
    with open_page(browser, shared_server) as seen:
        fill_and_submit(seen.page, "Unknown (no ultrasound)", "35", "Multiple, unknown count",
                        "34")
        wait_for_answer(seen.page)
        instance = {"is_male": features.IS_MALE_UNKNOWN, "mother_age": 35,
                    "plurality": features.PLURALITY_MULTIPLE_UNKNOWN, "gestation_weeks": 34}
        check_answer(seen, shared_server, instance)
        screenshot(seen, "unknowns", capsys)
        seen.assert_clean()


def pounds_ounces(pounds: float) -> str:
    """Whole ounces rounded once (halves up, as JavaScript's Math.round), the sign in front."""
    ounces = abs(pounds) * 16
    whole = math.floor(ounces)
    total = whole + (1 if ounces - whole >= 0.5 else 0)
    sign = "-" if pounds < 0 and total > 0 else ""
    return f"{sign}{total // 16} lb {total % 16} oz"


# Rounding edges: 15.99 oz and exactly 15.5 oz carry into the next pound, 0.49 oz does not;
# the ends of the possible weights; a negative weight (the page must convert any number right).
SHOWN_WEIGHTS = (7 + 15.99 / 16, 7 + 15.5 / 16, 7 + 0.49 / 16, 7 + 0.5 / 16, 7.0, 6.999,
                 features.LABEL_RANGE.min_pounds, features.LABEL_RANGE.max_pounds, 0.0, -0.21,
                 -1.17, 12.3456)


def test_pounds_ounces_and_grams_are_right_for_every_value(browser, shared_server):
    with open_page(browser, shared_server) as seen:
        page = seen.page
        for pounds in SHOWN_WEIGHTS:
            page.evaluate("p => showResult(p, '1')", pounds)
            assert page.locator("#weight-lb").inner_text() == f"{pounds:.2f}"
            assert page.locator("#weight-lb-oz").inner_text() == pounds_ounces(pounds), pounds
            grams = pounds * GRAMS_PER_POUND
            assert page.locator("#weight-g").inner_text() == f"{round(grams):,}", pounds
        assert pounds_ounces(7 + 15.99 / 16) == "8 lb 0 oz"  # the reference itself
        assert pounds_ounces(-0.21) == "-0 lb 3 oz"
        seen.assert_clean()


def test_lightest_and_heaviest_corners_show_possible_weights(browser, shared_server, capsys):
    """The REST answers at every corner of the features (tests/test_physical_predictions.py);
    the lightest and the heaviest of them entered as a person would, what-if chart included."""
    from tests.test_physical_predictions import assert_possible, corners

    instances = corners()
    predictions = server_predictions(shared_server, instances)
    for index in (int(np.argmin(predictions)), int(np.argmax(predictions))):
        instance = instances[index]
        with open_page(browser, shared_server) as seen:
            fill_and_submit(seen.page, ui.value_label(instance["is_male"]),
                            str(instance["mother_age"]), ui.value_label(instance["plurality"]),
                            str(instance["gestation_weeks"]))
            wait_for_answer(seen.page)
            pounds = float(seen.page.locator("#weight-lb").get_attribute("data-value"))
            # The server's answer for this instance alone, as the page asks: a row's float32
            # answer may differ in its last bit with the batch it ran in.
            assert pounds == pytest.approx(server_predictions(shared_server, [instance])[0],
                                           abs=1e-6)
            assert seen.page.locator("#weight-lb-oz").inner_text() == pounds_ounces(pounds)
            shown = [float(v) for v in seen.page.locator("#what-if svg circle.point")
                     .evaluate_all("cs => cs.map(c => c.dataset.value)")]
            assert len(shown) == len(WHAT_IF)
            assert_possible([pounds, *shown], f"the page at {instance}")
            seen.assert_clean()
