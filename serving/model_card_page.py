"""`GET /model_card`: the served version's model card, the HTML the pipeline wrote into the
version's assets.extra/ (reports/model_card.py), so the card always matches what answers."""
from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response

from serving.encoding import encode_json

CARD_HTML = os.path.join("assets.extra", "model_card.html")  # as reports/model_card.py writes


def install(app: FastAPI) -> None:
    """Adds GET /model_card (reads app.state.store's served version)."""

    # Not in the OpenAPI document: an HTML page for people, like /docs.
    @app.get("/model_card", include_in_schema=False)
    async def model_card() -> Response:
        served = app.state.store.current
        if served is None:
            return _missing(503, "No version is loaded yet.")
        path = os.path.join(served.path, CARD_HTML)
        if not os.path.isfile(path):
            return _missing(404, f"Version {served.version} has no model card ({CARD_HTML}); "
                                 "cards are written when the pipeline's report is published.")
        return FileResponse(path, media_type="text/html")


def _missing(status: int, message: str) -> Response:
    return Response(encode_json({"error": message}), status_code=status,
                    media_type="application/json")
