"""The one middleware behind the access log and the metrics: every answer gets its line, the
/v1/ answers past the Host/token guard are counted under the version that answered."""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, MutableMapping

from prometheus_client.parser import text_string_to_metric_families

from serving import access_log, security, ui
from serving.metrics import Metrics
from serving.recorder import Recorder
from tests.test_access_log import deferred  # noqa: F401 - the fixture

PATH = "/v1/models/m:predict"


async def _model(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(ui.VERSION_HEADER.lower().encode(), b"3")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _call(app: Any, host: bytes) -> List[Dict[str, Any]]:
    sent: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": PATH, "headers": [(b"host", host)]}
    asyncio.run(app(scope, receive, send))
    return sent


def _counts(metrics: Metrics) -> Dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(metrics.exposition().decode())
            for s in family.samples if s.name == "babyweight_serving_requests_total"}


def test_refusals_are_logged_and_not_counted(
        deferred: access_log.Deferred) -> None:  # noqa: F811
    metrics = Metrics("m", lambda: [])
    app = Recorder(security.Guard(_model, hosts=frozenset({"localhost"}), token=None,
                                  realm="m"), metrics, True, ui.VERSION_HEADER)
    assert _call(app, b"evil.example")[0]["status"] == 400
    assert _call(app, b"localhost")[0]["status"] == 200
    assert [(method, path, status) for _, method, path, status, _ in deferred.pending] == [
        ("POST", PATH, 400), ("POST", PATH, 200)]
    assert _counts(metrics) == {(("api", "predict"), ("model", "m"), ("protocol", "rest"),
                                 ("status", "200"), ("version", "3")): 1}


def test_metrics_without_the_access_log(deferred: access_log.Deferred) -> None:  # noqa: F811
    metrics = Metrics("m", lambda: [])
    assert _call(Recorder(_model, metrics, False, ui.VERSION_HEADER), b"x")[0]["status"] == 200
    assert not deferred.pending and sum(_counts(metrics).values()) == 1
