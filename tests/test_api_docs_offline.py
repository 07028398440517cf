"""The server's /docs renders with the network blocked: Swagger UI comes from the server."""
from __future__ import annotations

from typing import Any, Iterator, List

import pytest

from tests.browser import launched_chromium
from tests.serving_fixtures import RunningServer

pytest_plugins = ("tests.serving_fixtures",)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launched_chromium("the API docs")


def test_docs_render_offline(browser, shared_server: RunningServer, tmp_path, capsys):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    blocked: List[str] = []
    errors: List[str] = []

    def only_the_server(route: Any) -> None:
        if route.request.url.startswith(shared_server.url + "/"):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    page = context.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(shared_server.url + "/docs", wait_until="load")
        # Swagger UI draws one block per operation from /openapi.json once its script ran.
        try:
            page.locator(".opblock").first.wait_for(timeout=30_000)
        except Exception:
            raise AssertionError(f"no operations drawn; blocked {blocked}, errors {errors}, "
                                 f"page {page.locator('#swagger-ui').inner_text()[:1500]}")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(":predict" in p for p in paths), paths
        page.screenshot(path=str(tmp_path / "api-docs.png"), full_page=True)
    finally:
        context.close()
    assert not blocked, f"/docs reached for the network: {blocked}"
    assert not errors, errors
    with capsys.disabled():
        print(f"\nscreenshot: {tmp_path / 'api-docs.png'}")


@pytest.mark.slow
def test_served_versions_model_card(browser, pipeline_runs, server_factory, tmp_path, capsys):
    import json
    import urllib.request

    from reports.model_card import CARD_JSON

    serving_dir = pipeline_runs.base / "serving" / "babyweight"
    versions = sorted(p for p in serving_dir.iterdir() if p.name.isdigit())
    card = json.loads((versions[-1] / CARD_JSON).read_text())
    server = server_factory(serving_dir)
    context = browser.new_context(viewport={"width": 390, "height": 900})
    blocked: List[str] = []
    context.route("**/*", lambda route: route.continue_()
                  if route.request.url.startswith(server.url + "/")
                  else (blocked.append(route.request.url), route.abort()))
    page = context.new_page()
    try:
        page.goto(server.url + "/", wait_until="load")
        assert page.locator("#model-card-link").get_attribute("href") == "model_card"
        page.goto(server.url + "/model_card", wait_until="load")
        assert page.locator("#card-version").inner_text().startswith(versions[-1].name)
        assert card["babyweight"]["training_code_fingerprint"] in page.locator(
            "#card-fingerprint").inner_text()
        sizes = page.evaluate("[document.documentElement.scrollWidth,"
                              " document.documentElement.clientWidth]")
        assert sizes[0] <= sizes[1]
        page.screenshot(path=str(tmp_path / "served-model-card.png"), full_page=True)
    finally:
        context.close()
    assert not blocked, blocked
    with urllib.request.urlopen(server.url + "/model_card") as answer:
        assert answer.headers["Content-Type"].startswith("text/html")
    with capsys.disabled():
        print(f"\nscreenshot: {tmp_path / 'served-model-card.png'}")
