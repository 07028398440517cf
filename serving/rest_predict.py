"""REST :predict, :regress and :classify: module-level handlers on routes that answer directly.

Each route is a `DirectRoute`: FastAPI documents it in /openapi.json from its endpoint, as any
route, and the same endpoint answers, called without FastAPI's dependency solving and request
wrapping (the handlers read and check the body themselves, serving/validation.py). The routes
come first in the app's router, so the hot path matches at the first try.
"""
from __future__ import annotations

from typing import Any, Callable, List, MutableMapping, Optional

from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect

from serving import regress, schemas, service, ui, validation
from serving.encoding import predictions_json
from serving.model_store import ServedModel
from serving.rest_common import context, json_response, read_body, require_json, version_number
from serving.service import Label
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


# The endpoints FastAPI documents and the routes call: one per path shape.

async def predict_latest(request: Request, model_name: str) -> Response:
    return await predict(request, model_name, None)


async def predict_version(request: Request, model_name: str, version: str) -> Response:
    return await predict(request, model_name, version)


async def predict_label(request: Request, model_name: str, label: str) -> Response:
    return await predict(request, model_name, Label(label))


async def regress_latest(request: Request, model_name: str) -> Response:
    return await regress_or_classify(request, model_name, None, classify=False)


async def regress_version(request: Request, model_name: str, version: str) -> Response:
    return await regress_or_classify(request, model_name, version, classify=False)


async def regress_label(request: Request, model_name: str, label: str) -> Response:
    return await regress_or_classify(request, model_name, Label(label), classify=False)


async def classify_latest(request: Request, model_name: str) -> Response:
    return await regress_or_classify(request, model_name, None, classify=True)


async def classify_version(request: Request, model_name: str, version: str) -> Response:
    return await regress_or_classify(request, model_name, version, classify=True)


async def classify_label(request: Request, model_name: str, label: str) -> Response:
    return await regress_or_classify(request, model_name, Label(label), classify=True)


def routes(limits: LimitsConfig) -> List[DirectRoute]:
    """The POST routes, documented with the request bodies `limits` allows."""
    predict_docs, regress_docs = schemas.predict_openapi(limits), schemas.regress_openapi(limits)
    regress_summary = "TF Serving's Regress: {'examples': [...], 'context': {...}}"
    classify_summary = "TF Serving's Classify: always its error (a regression model)"
    one = "/v1/models/{model_name}/versions/{version}"
    labelled = "/v1/models/{model_name}/labels/{label}"
    return [
        DirectRoute("/v1/models/{model_name}:predict", predict_latest, tags=["predict"],
                    summary="Predict with the served version", openapi_extra=predict_docs),
        DirectRoute(f"{one}:predict", predict_version, tags=["predict"],
                    summary="Predict with one version (must be the served one)",
                    openapi_extra=predict_docs),
        DirectRoute(f"{labelled}:predict", predict_label, tags=["predict"],
                    summary="Predict with the version a label points at (model config file)",
                    openapi_extra=predict_docs),
        DirectRoute("/v1/models/{model_name}:regress", regress_latest, tags=["regress"],
                    summary=regress_summary, openapi_extra=regress_docs),
        DirectRoute(f"{one}:regress", regress_version, tags=["regress"],
                    summary=regress_summary + " (one version)", openapi_extra=regress_docs),
        DirectRoute(f"{labelled}:regress", regress_label, tags=["regress"],
                    summary=regress_summary + " (a labelled version)", openapi_extra=regress_docs),
        DirectRoute("/v1/models/{model_name}:classify", classify_latest, tags=["classify"],
                    summary=classify_summary, openapi_extra=regress_docs),
        DirectRoute(f"{one}:classify", classify_version, tags=["classify"],
                    summary=classify_summary + " (one version)", openapi_extra=regress_docs),
        DirectRoute(f"{labelled}:classify", classify_label, tags=["classify"],
                    summary=classify_summary + " (a labelled version)",
                    openapi_extra=regress_docs),
    ]
