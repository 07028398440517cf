"""REST model status, metadata, health and metrics: module-level handlers on one router."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving import metrics as metrics_module
from serving.rest_common import (ByVersion, context, error_response, json_response,
                                 version_number, version_routes)
from serving.service import ApiError, Label

router = APIRouter()


async def status(request: Request, model_name: str, version: Optional[str]) -> Response:
    """TF Serving's GetModelStatus; a GET of a :verb path is a 405 naming POST."""
    for part in (model_name, version if isinstance(version, Label) else ""):
        if ":" in part:
            raise ApiError(405, f"{part.split(':', 1)[1]} needs POST", {"Allow": "POST"})
    number = version_number(version, request.method, request.url.path)
    found = context(request).service.statuses(model_name, number)
    return json_response({"model_version_status": [s.to_json() for s in found]})


async def metadata(request: Request, model_name: str, version: Optional[str]) -> Response:
    """TF Serving's GetModelMetadata (signature_def) of the version that would answer."""
    shared = context(request).service
    number, defs = shared.metadata(model_name, version_number(
        version, request.method, request.url.path))
    return json_response({
        "model_spec": {"name": shared.name, "signature_name": "", "version": str(number)},
        "metadata": {"signature_def": {"signature_def": defs}},
    })


@router.get("/healthz", tags=["health"], summary="200 once a model version is loaded, else 503")
async def healthz(request: Request) -> Response:
    found = context(request)
    shared = found.service
    served = shared.store.current
    if served is None:
        return error_response(503, f"no version of model {shared.name!r} is loaded yet")
    answer = {"status": "ok", "model": shared.name, "version": served.version,
              "polls": shared.store.polls, "batching": shared.batcher.stats()}
    if found.request_log is not None:
        answer["request_log"] = found.request_log.status()
    return json_response(answer)


_DECLARED = (  # handler, its endpoints' names, path suffix, tag, summaries
    (status, ByVersion("model_status", "version_status", "label_status"), "", "model status",
     ByVersion("Status of every version (TF Serving's GetModelStatus)", "Status of one version",
               "Status of every version, as TF Serving answers a label's status")),
    (metadata, ByVersion("model_metadata", "version_metadata", "label_metadata"), "/metadata",
     "model metadata",
     ByVersion("Signatures of the served version (TF Serving's GetModelMetadata)",
               "Signatures of one version (must be the served one)",
               "Signatures of the version a label points at (model config file)")),
)


def _add_version_routes() -> None:
    for handler, names, suffix, tag, summaries in _DECLARED:
        for path, endpoint, summary in version_routes(handler, names, summaries, suffix):
            router.add_api_route(path, endpoint, methods=["GET"], tags=[tag], summary=summary)


_add_version_routes()


metrics_router = APIRouter()


@metrics_router.get(metrics_module.PATH, include_in_schema=False)  # text, for Prometheus
async def prometheus_metrics(request: Request) -> Response:
    counted = context(request).metrics
    return Response(counted.exposition(), media_type=metrics_module.CONTENT_TYPE)
