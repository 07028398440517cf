"""The REST app: TF Serving's paths, bodies and status codes over the served babyweight model.

  GET  /v1/models/{name}[/versions/{v}]             model version status
  GET  /v1/models/{name}[/versions/{v}]/metadata    signature metadata
  POST /v1/models/{name}[/versions/{v}]:predict     row ("instances") or columnar ("inputs")
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

from serving import docs, model_card_page, schemas, security, ui, validation
from serving.batching import Batcher
from serving.encoding import encode_json, predictions_json
from modules.features import LABEL_KEY
from serving.model_store import ServedModel
from serving.request_log import RequestLog, RequestLogConfig
from serving.settings import BatchingConfig, LimitsConfig, ModelConfig
from serving.version_manager import Loader, ModelStore, RetryPolicy
from serving.versions import parse_version

LOGGER = logging.getLogger("babyweight.serving")
ACCESS_LOGGER = logging.getLogger("babyweight.serving.access")

# Bodies over the limit are still read (and dropped) up to this multiple of it, so the client
# gets its 400 instead of a connection reset; beyond that the connection is simply closed.
_DRAIN_FACTOR = 4


class ApiError(Exception):
    """An answer other than 200, as TF Serving gives it: {"error": message}."""

    def __init__(self, status: int, message: str, headers: Optional[dict] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


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
               request_log: Optional[RequestLogConfig] = None) -> FastAPI:
    """The app; its loader thread starts at startup and loads the newest version.

    `hosts`: the Host header values accepted (None: any); `token`: the bearer token every
    request needs (None: none); `manage_heap`: let the loader freeze and collect the GC heap
    (off when the app shares its process with something else, e.g. a test runner).
    `request_log`: where a sample of predicted rows goes, off the request path (its written
    and dropped counts are in /healthz).
    """
    store = ModelStore(model.model_dir,
                       RetryPolicy(model.max_num_load_retries,
                                   model.load_retry_interval_micros / 1e6),
                       manage_heap=manage_heap)
    logged = RequestLog(request_log) if request_log is not None else None
    if logged is not None:
        atexit.register(logged.close)  # the server exits on SIGTERM without a lifespan end
    batcher = Batcher(batching.max_batch_rows, batching.batch_timeout_ms / 1e3,
                      batching.model_threads)
    name = model.model_name

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader = Loader(store, poll_seconds)
        loader.start()
        try:
            yield
        finally:
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

    def _check_name(model_name: str, version: Optional[int]) -> None:
        if model_name != name:
            wanted = f"Latest({model_name})" if version is None else \
                f"Specific({model_name}, {version})"
            raise ApiError(404, f"Servable not found for request: {wanted}")

    def _served(request: Request, model_name: str, version: Optional[str]) -> ServedModel:
        """The version to answer with, counted in use: the caller must `store.release` it."""
        number = version_number(version, request.method, request.url.path)
        _check_name(model_name, number)
        served = store.acquire()
        if served is None:
            if store.ever_served:  # unloaded: TF Serving's answer when no servable is left
                wanted = f"Latest({name})" if number is None else f"Specific({name}, {number})"
                raise ApiError(404, f"Servable not found for request: {wanted}")
            raise ApiError(503, f"No version of model {name!r} is loaded yet; see "
                           f"/v1/models/{name} for its status.")
        if number is not None and number != served.version:
            store.release(served)
            raise ApiError(404, f"Servable not found for request: Specific({name}, {number})"
                           f"; serving version {served.version}")
        return served

    def _status(request: Request, model_name: str, version: Optional[str]) -> Response:
        if ":" in model_name:
            raise ApiError(405, f"{model_name.split(':', 1)[1]} needs POST", {"Allow": "POST"})
        number = version_number(version, request.method, request.url.path)
        _check_name(model_name, number)
        statuses = store.statuses()
        if number is not None:
            statuses = [s for s in statuses if s.version == number][:1]
            if not statuses:
                raise ApiError(404, f"Could not find version {number} of model {name}")
        elif not statuses:
            raise ApiError(404, f"Could not find any versions of model {name}")
        return json_response({"model_version_status": [s.to_json() for s in statuses]})

    def _metadata(request: Request, model_name: str, version: Optional[str]) -> Response:
        served = _served(request, model_name, version)
        store.release(served)
        return json_response({
            "model_spec": {"name": name, "signature_name": "", "version": str(served.version)},
            "metadata": {"signature_def": {"signature_def": served.signature_defs}},
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
        signature = served.signatures.get(body.signature_name)
        if signature is None:
            raise ApiError(400, f"Serving signature name: \"{body.signature_name}\" not found "
                           f"in signature def; available: {', '.join(sorted(served.signatures))}")
        if signature.takes_features:
            columns, rows = validation.feature_columns(body, limits.max_instances)
        elif signature.takes_examples:
            columns, rows = validation.example_column(body.payload, body.row_format,
                                                      limits.max_instances)
        else:
            raise ApiError(400, f"signature {body.signature_name!r} takes inputs this server "
                           "does not build from JSON; use serving_default")
        try:
            outputs = await batcher.predict(served, body.signature_name, columns, rows)
        except tf.errors.InvalidArgumentError as error:  # validated input should never get here
            raise ApiError(400, error.message) from None
        if logged is not None and signature.takes_features:
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
                  "batching": batcher.stats()}
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

    async def predict_fast(request: Request, model_name: str, version: Optional[str]
                           ) -> Response:
        try:
            return await _predict(request, model_name, version)
        except ApiError as error:
            return error_response(error.status, error.message, error.headers)
        except validation.RequestError as error:
            return error_response(400, error.message)

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
    if hosts is not None or token:
        app.add_middleware(security.Guard, hosts=hosts, token=token, realm=name)
    if access_log:
        app.add_middleware(AccessLog)
    return app
