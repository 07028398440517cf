"""The REST app: TF Serving's paths, bodies and status codes over the served babyweight model.

  GET  /v1/models/{name}[/versions/{v}]             model version status
  GET  /v1/models/{name}[/versions/{v}]/metadata    signature metadata
  POST /v1/models/{name}[/versions/{v}]:predict     row ("instances") or columnar ("inputs")
  POST /v1/models/{name}[/versions/{v}]:regress     TF Serving's examples/context (:classify too)
  GET  /monitoring/prometheus/metrics               serving/metrics.py; gRPC: grpc_server.py
  GET  /healthz                                     200 once a version is loaded, else 503
  GET  /                                            the prediction web page (serving/ui/)

A :predict answer's body is exactly TF Serving's; its X-Model-Version header names the version
that answered (the page shows it).

Errors are {"error": "<message>"}: 400 for anything wrong with a request (checked against the
feature declaration before the model sees it; a version in a path is ASCII digits that fit
int64), 404 for an unknown model or version (also once the only version was deleted and
unloaded, as TF Serving answers), 405 with `Allow` for a wrong method, 415 for a :predict body
not declared `application/json`, 503 until the first version has loaded. serving/security.py
adds the Host check and the optional bearer token. Client mistakes never produce a 5xx.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import re
import time
from typing import Any, AsyncIterator, Awaitable, Callable, FrozenSet, MutableMapping, Optional

import tensorflow as tf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from serving import docs, model_card_page, regress, schemas, security, service, ui, validation
from serving.batching import Batcher
from serving.encoding import encode_json, predictions_json
from serving import metrics as metrics_module
from serving.metrics import Metrics
from modules.features import LABEL_KEY
from serving.model_store import ServedModel, load_version
from serving.request_log import RequestLog, RequestLogConfig
from serving.service import ApiError, Service
from serving.settings import BatchingConfig, LimitsConfig, ModelConfig
from serving.version_manager import Loader, ModelStore, RetryPolicy
from serving.versions import parse_version

LOGGER = logging.getLogger("babyweight.serving")
ACCESS_LOGGER = logging.getLogger("babyweight.serving.access")

# Bodies over the limit are still read (and dropped) up to this multiple of it, so the client
# gets its 400 instead of a connection reset; beyond that the connection is simply closed.
_DRAIN_FACTOR = 4


def json_response(value: Any, status: int = 200) -> Response:
    return Response(encode_json(value), status_code=status, media_type="application/json")


def error_response(status: int, message: str, headers: Optional[dict] = None) -> Response:
    response = json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


def version_number(version: Optional[str], method: str, path: str) -> Optional[int]:
    """A path's version as TF Serving reads it: ASCII digits that fit int64, else a 400."""
    if version is None:
        return None
    number = parse_version(version)
    if number is not None:
        return number
    if version.isascii() and version.isdigit():
        shown = version if len(version) <= 40 else f"{version[:20]}...({len(version)} digits)"
        raise ApiError(400, f"Failed to convert version: {shown} to numeric.")
    raise ApiError(400, f"Malformed request: {method} {path[:200]}: a version is ASCII digits")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ApiError(400) when it is over `limit` bytes (checked while reading).

    Reads the ASGI messages directly: Starlette's stream() generator costs more per request.
    """
    declared = request.headers.get("content-length")
    too_big = False
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"invalid Content-Length header {declared!r}")
        too_big = int(declared) > limit
    chunks, size, more = [], 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            too_big = True
            if size > _DRAIN_FACTOR * limit:
                break
        if not too_big:
            chunks.append(chunk)
    if too_big:
        raise ApiError(400, f"request body of {declared or size} bytes is over the limit of "
                       f"{limit} bytes (--max-body-bytes); split the batch")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class AccessLog:
    """Pure ASGI middleware: one log line per request (method, path, status, latency)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                      send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            ACCESS_LOGGER.info("%s %s %d %.2f ms", scope["method"], scope["path"], status,
                               (time.perf_counter() - started) * 1e3)


_PREDICT_PATH = re.compile(r"/v1/models/([^/]+?)(?:/versions/([^/]+))?:predict")


class FastPredictPath:
    """Pure ASGI middleware answering POST .../:predict directly, the hot path.

    FastAPI's routing, dependency solving and exception layers cost about a fifth of a
    single-row request's server time; the routes FastAPI declares for :predict (and documents
    in /openapi.json) run the same handler, so both paths answer identically.
    """

    def __init__(self, app: Callable[..., Awaitable[None]],
                 predict: Callable[[Request, str, Optional[str]], Awaitable[Response]]) -> None:
        self.app = app
        self.predict = predict

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                      send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PREDICT_PATH.fullmatch(scope["path"])
            if match is not None:
                try:
                    response = await self.predict(Request(scope, receive), match.group(1),
                                                  match.group(2))
                except ClientDisconnect:
                    return  # nobody to answer
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def configure_tensorflow(threads: int) -> None:
    """Sets TensorFlow's thread pools; must run before the first model loads."""
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def create_app(model: ModelConfig = ModelConfig(), limits: LimitsConfig = LimitsConfig(),
               batching: BatchingConfig = BatchingConfig(), poll_seconds: float = 2.0,
               access_log: bool = True, hosts: Optional[FrozenSet[str]] = None,
               token: Optional[str] = None, manage_heap: bool = True,
               grpc_address: Optional[str] = None, metrics: bool = True,
               request_log: Optional[RequestLogConfig] = None) -> FastAPI:
    """The app; its loader thread starts at startup and loads the newest version.

    `hosts`: the Host header values accepted (None: any); `token`: the bearer token every
    request needs (None: none); `manage_heap`: let the loader freeze and collect the GC heap
    (off when the app shares its process with something else, e.g. a test runner);
    `grpc_address`: host:port for TF Serving's gRPC API in the same event loop (None: none);
    `metrics`: Prometheus metrics at serving/metrics.py's PATH; `request_log`: where a sample
    of predicted rows goes, off the request path (its written and dropped counts are in
    /healthz).
    """
    name = model.model_name
    counted = Metrics(name, lambda: store.statuses()) if metrics else None
    store = ModelStore(model.model_dir,
                       RetryPolicy(model.max_num_load_retries,
                                   model.load_retry_interval_micros / 1e6),
                       load=counted.timed_load(load_version) if counted else load_version,
                       manage_heap=manage_heap)
    logged = RequestLog(request_log) if request_log is not None else None
    if logged is not None:
        atexit.register(logged.close)  # the server exits on SIGTERM without a lifespan end
    batcher = Batcher(batching.max_batch_rows, batching.batch_timeout_ms / 1e3,
                      batching.model_threads)
    if counted is not None:
        batcher.on_call = counted.observe_batch

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = Loader(store, poll_seconds)
        loader.start()
        grpc = None
        if grpc_address is not None:
            from serving import grpc_server
            grpc, _ = await grpc_server.start(shared, grpc_address, token, counted)
        try:
            yield
        finally:
            if grpc is not None:
                await grpc.stop(grace=2)
            loader.stop()
            batcher.close()
            if logged is not None:
                logged.close()

    app = FastAPI(
        title=f"{name} model server",
        version="1",
        description=(
            "TensorFlow Serving's REST API (same paths, bodies and status codes) for the "
            f"newest version under `{model.model_dir}`. Predict with the row format "
            "`{\"instances\": [{...}]}` or the columnar format `{\"inputs\": {...}}`; errors "
            "are `{\"error\": \"...\"}`."),
        lifespan=lifespan,
        docs_url=None,  # serving/docs.py serves /docs from local assets
    )
    app.state.store = store
    app.state.batcher = batcher

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> Response:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(validation.RequestError)
    async def _request_error(_: Request, error: validation.RequestError) -> Response:
        return error_response(400, error.message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
        return error_response(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, error: RequestValidationError) -> Response:
        return error_response(400, str(error))

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, error: Exception) -> Response:
        LOGGER.error("Internal error: %r", error)
        return error_response(500, f"internal error: {type(error).__name__}")

    shared = Service(name, store, batcher, limits)
    app.state.service = shared

    def _served(request: Request, model_name: str, version: Optional[str]) -> ServedModel:
        """The version to answer with, counted in use: the caller must `store.release` it."""
        return shared.acquire(model_name, version_number(version, request.method,
                                                         request.url.path))

    def _status(request: Request, model_name: str, version: Optional[str]) -> Response:
        if ":" in model_name:
            raise ApiError(405, f"{model_name.split(':', 1)[1]} needs POST", {"Allow": "POST"})
        number = version_number(version, request.method, request.url.path)
        found = shared.statuses(model_name, number)
        return json_response({"model_version_status": [s.to_json() for s in found]})

    def _metadata(request: Request, model_name: str, version: Optional[str]) -> Response:
        number, defs = shared.metadata(model_name, version_number(
            version, request.method, request.url.path))
        return json_response({
            "model_spec": {"name": name, "signature_name": "", "version": str(number)},
            "metadata": {"signature_def": {"signature_def": defs}},
        })

    async def _predict(request: Request, model_name: str, version: Optional[str]) -> Response:
        if not security.is_json_content_type(request.headers.get("content-type")):
            raise ApiError(415, "a :predict body must be JSON, sent with 'Content-Type: "
                           f"{security.JSON_MEDIA_TYPE}'; got "
                           f"{request.headers.get('content-type', 'no Content-Type')!r}")
        served = _served(request, model_name, version)
        try:
            return await _answer(request, served)
        finally:
            store.release(served)

    async def _answer(request: Request, served: ServedModel) -> Response:
        body = validation.parse_predict_body(
            validation.parse_json(await read_body(request, limits.max_body_bytes)))
        found = service.signature(served, body.signature_name)
        columns, rows = service.predict_columns(found, body.signature_name, body.payload,
                                                body.row_format, limits.max_instances)
        outputs = await shared.call(served, body.signature_name, columns, rows)
        if logged is not None and found.takes_features:
            logged.log_columns(columns, outputs.get(LABEL_KEY, ()), served.version)
        response = json_response(predictions_json(outputs, body.row_format))
        response.headers[ui.VERSION_HEADER] = str(served.version)
        return response

    @app.get("/healthz", tags=["health"], summary="200 once a model version is loaded, else 503")
    async def healthz() -> Response:
        served = store.current
        if served is None:
            return error_response(503, f"no version of model {name!r} is loaded yet")
        status = {"status": "ok", "model": name, "version": served.version,
                  "polls": store.polls, "batching": batcher.stats()}
        if logged is not None:
            status["request_log"] = logged.status()
        return json_response(status)

    @app.get("/v1/models/{model_name}", tags=["model status"],
             summary="Status of every version (TF Serving's GetModelStatus)")
    async def model_status(request: Request, model_name: str) -> Response:
        return _status(request, model_name, None)

    @app.get("/v1/models/{model_name}/versions/{version}", tags=["model status"],
             summary="Status of one version")
    async def version_status(request: Request, model_name: str, version: str) -> Response:
        return _status(request, model_name, version)

    @app.get("/v1/models/{model_name}/metadata", tags=["model metadata"],
             summary="Signatures of the served version (TF Serving's GetModelMetadata)")
    async def model_metadata(request: Request, model_name: str) -> Response:
        return _metadata(request, model_name, None)

    @app.get("/v1/models/{model_name}/versions/{version}/metadata", tags=["model metadata"],
             summary="Signatures of one version (must be the served one)")
    async def version_metadata(request: Request, model_name: str, version: str) -> Response:
        return _metadata(request, model_name, version)

    predict_docs = schemas.predict_openapi(limits)

    @app.post("/v1/models/{model_name}:predict", tags=["predict"],
              summary="Predict with the served version", openapi_extra=predict_docs)
    async def predict(request: Request, model_name: str) -> Response:
        return await _predict(request, model_name, None)

    @app.post("/v1/models/{model_name}/versions/{version}:predict", tags=["predict"],
              summary="Predict with one version (must be the served one)",
              openapi_extra=predict_docs)
    async def predict_version(request: Request, model_name: str, version: str) -> Response:
        return await _predict(request, model_name, version)

    async def _regress(request: Request, model_name: str, version: Optional[str],
                       classify: bool) -> Response:
        if not security.is_json_content_type(request.headers.get("content-type")):
            raise ApiError(415, "a request body must be JSON, sent with 'Content-Type: "
                           f"{security.JSON_MEDIA_TYPE}'")
        number = version_number(version, request.method, request.url.path)
        answered, values = await regress.rest(
            shared, validation.parse_json(await read_body(request, limits.max_body_bytes)),
            model_name, number, classify)
        response = json_response({"result": values})
        response.headers[ui.VERSION_HEADER] = str(answered)
        return response

    def regress_routes(verb: str, summary: str) -> None:
        async def latest(request: Request, model_name: str) -> Response:
            return await _regress(request, model_name, None, verb == "classify")

        async def one(request: Request, model_name: str, version: str) -> Response:
            return await _regress(request, model_name, version, verb == "classify")

        docs = schemas.regress_openapi(limits)
        app.post(f"/v1/models/{{model_name}}:{verb}", tags=[verb], summary=summary,
                 openapi_extra=docs)(latest)
        app.post(f"/v1/models/{{model_name}}/versions/{{version}}:{verb}", tags=[verb],
                 summary=summary + " (one version)", openapi_extra=docs)(one)

    regress_routes("regress", "TF Serving's Regress: {'examples': [...], 'context': {...}}")
    regress_routes("classify", "TF Serving's Classify: always its error (a regression model)")

    async def predict_fast(request: Request, model_name: str, version: Optional[str]
                           ) -> Response:
        try:
            return await _predict(request, model_name, version)
        except ApiError as error:
            return error_response(error.status, error.message, error.headers)
        except validation.RequestError as error:
            return error_response(400, error.message)

    if counted is not None:
        @app.get(metrics_module.PATH, include_in_schema=False)  # text, for Prometheus
        async def prometheus_metrics() -> Response:
            return Response(counted.exposition(), media_type=metrics_module.CONTENT_TYPE)

    ui.install(app, name)
    docs.install(app, f"{name} model server")
    model_card_page.install(app)
    openapi = app.openapi

    def documented() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = schemas.finish_openapi(openapi(), token=bool(token))
        return app.openapi_schema

    app.openapi = documented  # type: ignore[method-assign]

    # Outermost first: the access log sees every answer, the fast path's included.
    app.add_middleware(FastPredictPath, predict=predict_fast)
    if counted is not None:
        app.add_middleware(metrics_module.Middleware, metrics=counted,
                           version_header=ui.VERSION_HEADER)
    if hosts is not None or token:
        app.add_middleware(security.Guard, hosts=hosts, token=token, realm=name)
    if access_log:
        app.add_middleware(AccessLog)
    return app
