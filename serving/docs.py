"""`/docs` from local files: Swagger UI from the `fastapi-offline` package, not a CDN.

FastAPI's default page loads Swagger UI's script and style from jsDelivr, so the API's docs
are blank on a machine without internet access; here the same page takes them from the
package's copy, served under /docs-assets. (`swagger-ui-bundle` ships Swagger UI 4, which cannot
read the OpenAPI 3.1 document FastAPI writes; fastapi-offline's copy is Swagger UI 5.)
"""
from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_PREFIX = "/docs-assets"


def install(app: FastAPI, title: str) -> None:
    """Adds GET /docs (the app must be made with docs_url=None) and its assets."""
    import fastapi_offline

    static = os.path.join(os.path.dirname(fastapi_offline.__file__), "static")
    app.mount(ASSETS_PREFIX, StaticFiles(directory=static), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{title}: API docs",
            swagger_js_url=f"{ASSETS_PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PREFIX}/favicon.png")
