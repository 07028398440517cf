"""REST :predict, :regress and :classify: module-level handlers on routes that answer directly.

Each route is a `DirectRoute`: FastAPI documents it in /openapi.json from its endpoint, as any
route, and the same endpoint answers, called without FastAPI's dependency solving and request
wrapping (the handlers read and check the body themselves, serving/validation.py). The routes
come first in the app's router, so the hot path matches at the first try.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, List, MutableMapping, Optional

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from serving import regress, schemas, service, ui, validation
from serving.encoding import predictions_json
from serving.model_store import ServedModel
from serving.rest_common import (ByVersion, context, json_response, read_body, require_json,
                                 version_number, version_routes)
from serving.settings import LimitsConfig


class DirectRoute(APIRoute):
    """A POST route whose endpoint(request, **path params) is awaited as is.

    Errors it raises (ApiError, validation.RequestError) go to the app's exception handlers,
    so every route's errors have one format.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, methods=["POST"], **kwargs)
        self.app = self._answer

    async def _answer(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                      send: Callable[..., Any]) -> None:
        try:
            response = await self.endpoint(Request(scope, receive), **scope["path_params"])
        except ClientDisconnect:
            return  # nobody to answer
        await response(scope, receive, send)


async def predict(request: Request, model_name: str, version: Optional[str]) -> Response:
    """TF Serving's :predict: the "instances" (row) or "inputs" (columnar) format."""
    require_json(request, "a :predict body", shown=True)
    shared = context(request).service
    served = shared.acquire(model_name, version_number(version, request.method,
                                                       request.url.path))
    try:
        return await _predict_with(request, served)
    finally:
        shared.release(served)


async def _predict_with(request: Request, served: ServedModel) -> Response:
    shared = context(request).service
    limits = shared.limits
    body = validation.parse_predict_body(
        validation.parse_json(await read_body(request, limits.max_body_bytes)))
    found = service.signature(served, body.signature_name)
    columns, rows = service.predict_columns(found, body.signature_name, body.payload,
                                            body.row_format, limits.max_instances)
    outputs = await shared.call(served, body.signature_name, columns, rows)  # logs it too
    response = json_response(predictions_json(outputs, body.row_format))
    response.headers[ui.VERSION_HEADER] = str(served.version)
    return response


async def regress_or_classify(request: Request, model_name: str, version: Optional[str],
                              classify: bool) -> Response:
    """TF Serving's :regress (and :classify, its error for a regression model)."""
    require_json(request, "a request body", shown=False)
    shared = context(request).service
    number = version_number(version, request.method, request.url.path)
    answered, values = await regress.rest(
        shared, validation.parse_json(await read_body(request, shared.limits.max_body_bytes)),
        model_name, number, classify)
    response = json_response({"result": values})
    response.headers[ui.VERSION_HEADER] = str(answered)
    return response


def routes(limits: LimitsConfig) -> List[DirectRoute]:
    """The POST routes, documented with the request bodies `limits` allows."""
    predict_docs, regress_docs = schemas.predict_openapi(limits), schemas.regress_openapi(limits)
    regress_summary = "TF Serving's Regress: {'examples': [...], 'context': {...}}"
    classify_summary = "TF Serving's Classify: always its error (a regression model)"
    declared = (  # verb, handler, its body's documentation, summaries
        ("predict", predict, predict_docs,
         ByVersion("Predict with the served version",
                   "Predict with one version (must be the served one)",
                   "Predict with the version a label points at (model config file)")),
        ("regress", functools.partial(regress_or_classify, classify=False), regress_docs,
         ByVersion(regress_summary, regress_summary + " (one version)",
                   regress_summary + " (a labelled version)")),
        ("classify", functools.partial(regress_or_classify, classify=True), regress_docs,
         ByVersion(classify_summary, classify_summary + " (one version)",
                   classify_summary + " (a labelled version)")),
    )
    return [DirectRoute(path, endpoint, tags=[verb], summary=summary, openapi_extra=docs)
            for verb, handler, docs, summaries in declared
            for path, endpoint, summary in version_routes(
                handler, ByVersion(f"{verb}_latest", f"{verb}_version", f"{verb}_label"),
                summaries, f":{verb}")]
