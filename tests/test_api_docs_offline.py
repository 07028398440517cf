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
