"""REST model status, metadata, health and metrics: module-level handlers on one router."""
from __future__ import annotations

from typing import Optional

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving import metrics as metrics_module
from serving.rest_common import context, error_response, json_response, version_number
from serving.service import ApiError, Label

router = APIRouter()


def status(request: Request, model_name: str, version: Optional[str]) -> Response:
    """TF Serving's GetModelStatus; a GET of a :verb path is a 405 naming POST."""
    for part in (model_name, version if isinstance(version, Label) else ""):
        if ":" in part:
            raise ApiError(405, f"{part.split(':', 1)[1]} needs POST", {"Allow": "POST"})
    number = version_number(version, request.method, request.url.path)
    found = context(request).service.statuses(model_name, number)
    return json_response({"model_version_status": [s.to_json() for s in found]})


def metadata(request: Request, model_name: str, version: Optional[str]) -> Response:
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


@router.get("/v1/models/{model_name}", tags=["model status"],
            summary="Status of every version (TF Serving's GetModelStatus)")
async def model_status(request: Request, model_name: str) -> Response:
    return status(request, model_name, None)


@router.get("/v1/models/{model_name}/versions/{version}", tags=["model status"],
            summary="Status of one version")
async def version_status(request: Request, model_name: str, version: str) -> Response:
    return status(request, model_name, version)


@router.get("/v1/models/{model_name}/metadata", tags=["model metadata"],
            summary="Signatures of the served version (TF Serving's GetModelMetadata)")
async def model_metadata(request: Request, model_name: str) -> Response:
    return metadata(request, model_name, None)


@router.get("/v1/models/{model_name}/versions/{version}/metadata", tags=["model metadata"],
            summary="Signatures of one version (must be the served one)")
async def version_metadata(request: Request, model_name: str, version: str) -> Response:
    return metadata(request, model_name, version)


@router.get("/v1/models/{model_name}/labels/{label}", tags=["model status"],
            summary="Status of every version, as TF Serving answers a label's status")
async def label_status(request: Request, model_name: str, label: str) -> Response:
    return status(request, model_name, Label(label))


@router.get("/v1/models/{model_name}/labels/{label}/metadata", tags=["model metadata"],
            summary="Signatures of the version a label points at (model config file)")
async def label_metadata(request: Request, model_name: str, label: str) -> Response:
    return metadata(request, model_name, Label(label))


metrics_router = APIRouter()


@metrics_router.get(metrics_module.PATH, include_in_schema=False)  # text, for Prometheus
async def prometheus_metrics(request: Request) -> Response:
    counted = context(request).metrics
    return Response(counted.exposition(), media_type=metrics_module.CONTENT_TYPE)
