"""The REST app: TF Serving's paths, bodies and status codes over the served babyweight model.

  GET  /v1/models/{name}[/versions/{v}]             model version status
  GET  /v1/models/{name}[/versions/{v}]/metadata    signature metadata
  POST /v1/models/{name}[/versions/{v}]:predict     row ("instances") or columnar ("inputs")
  POST /v1/models/{name}[/versions/{v}]:regress     TF Serving's examples/context (:classify too)
       /v1/models/{name}/labels/{label}...          the same, for a label (model config file)
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

import asyncio
import atexit
import contextlib
import logging
import time
from typing import Any, AsyncIterator, Callable, FrozenSet, Optional, Tuple

import tensorflow as tf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving import (docs, model_card_page, rest_model, rest_predict,
                     schemas, security, ui, validation)
from serving.batching import Batcher
from serving.metrics import Metrics
from serving.model_config import ConfigWatcher, VersionPolicy, with_config_file
from serving.model_store import load_version
from serving.recorder import Recorder
from serving.request_log import RequestLog, RequestLogConfig
from serving.rest_common import Context, error_response
from serving.service import ApiError, Service
from serving.settings import BatchingConfig, LimitsConfig, ModelConfig
from serving.loader import Loader
from serving.version_manager import ModelStore, RetryPolicy

LOGGER = logging.getLogger("babyweight.serving")


def configure_tensorflow(threads: int) -> None:
    """Sets TensorFlow's thread pools; must run before the first model loads."""
    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


async def _api_error(_: Request, error: ApiError) -> Response:
    return error_response(error.status, error.message, error.headers)


async def _request_error(_: Request, error: validation.RequestError) -> Response:
    return error_response(400, error.message)


async def _http_error(_: Request, error: StarletteHTTPException) -> Response:
    return error_response(error.status_code, str(error.detail), error.headers)


async def _validation_error(_: Request, error: RequestValidationError) -> Response:
    return error_response(400, str(error))


async def _internal_error(_: Request, error: Exception) -> Response:
    LOGGER.error("Internal error: %r", error)
    return error_response(500, f"internal error: {type(error).__name__}")


_ERROR_HANDLERS = ((ApiError, _api_error), (validation.RequestError, _request_error),
                   (StarletteHTTPException, _http_error),
                   (RequestValidationError, _validation_error), (Exception, _internal_error))


def _lifespan(loader: Loader, shared: Service, grpc_address: Optional[str],
              token: Optional[str], counted: Optional[Metrics],
              logged: Optional[RequestLog], grpc_threads: int) -> Callable[[FastAPI], Any]:
    """Starts the loader thread (and the gRPC server) at startup; stops them at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loader.start()
        grpc = None
        if grpc_address is not None:
            from serving import grpc_server, reload_config
            grpc, _ = grpc_server.start(
                shared, grpc_address, token, counted, grpc_threads,
                lambda config: reload_config.reload(shared, loader, config))
        try:
            yield
        finally:
            if grpc is not None:  # requests in progress finish (grace), off the loop
                await asyncio.to_thread(grpc.stop, 2)
            loader.stop()
            shared.batcher.close()
            if logged is not None:
                logged.close()

    return lifespan


def _documented(app: FastAPI, token: Optional[str]) -> Callable[[], dict]:
    """app.openapi with the project's additions (serving/schemas.py), built once."""
    openapi = app.openapi

    def documented() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = schemas.finish_openapi(openapi(), token=bool(token))
        return app.openapi_schema

    return documented


def _parts(model: ModelConfig, batching: BatchingConfig, manage_heap: bool, metrics: bool,
           policy: VersionPolicy, monitoring_dir: Optional[str] = None
           ) -> Tuple[ModelStore, Batcher, Optional[Metrics]]:
    """The version store (its loads timed when metrics are on) and the shared batcher."""
    counted = (Metrics(model.model_name, lambda: store.statuses(), monitoring_dir)
               if metrics else None)
    store = ModelStore(model.model_dir,
                       RetryPolicy(model.max_num_load_retries,
                                   model.load_retry_interval_micros / 1e6),
                       load=counted.timed_load(load_version) if counted else load_version,
                       manage_heap=manage_heap, policy=policy, model_name=model.model_name,
                       load_cpu_share=model.load_cpu_share)
    batcher = Batcher(batching.max_batch_rows, batching.batch_timeout_ms / 1e3,
                      batching.model_threads)
    if counted is not None:
        batcher.on_call = counted.observe_batch
    return store, batcher, counted


def create_app(model: ModelConfig = ModelConfig(), limits: LimitsConfig = LimitsConfig(),
               batching: BatchingConfig = BatchingConfig(), poll_seconds: float = 2.0,
               access_log: bool = True, hosts: Optional[FrozenSet[str]] = None,
               token: Optional[str] = None, manage_heap: bool = True,
               grpc_address: Optional[str] = None, metrics: bool = True,
               request_log: Optional[RequestLogConfig] = None,
               monitoring_dir: Optional[str] = None, grpc_threads: int = 32) -> FastAPI:
    """The app; its loader thread starts at startup and loads the newest version (or what
    --model-config-file asks for; a wrong file raises model_config.ConfigError).

    `hosts`: the Host header values accepted (None: any); `token`: the bearer token every
    request needs (None: none); `manage_heap`: let the loader freeze and collect the GC heap
    (off when the app shares its process with something else, e.g. a test runner);
    `grpc_address`: host:port for TF Serving's gRPC API in the same process (None: none),
    with at most `grpc_threads` calls in progress at once;
    `metrics`: Prometheus metrics at serving/metrics.py's PATH; `request_log`: where a sample
    of predicted rows goes, off the request path (its written and dropped counts are in
    /healthz); `monitoring_dir`: the monitoring command's results, whose newest distances
    the metrics show.
    """
    model, found = with_config_file(model)
    name = model.model_name
    store, batcher, counted = _parts(model, batching, manage_heap, metrics,
                                     found.policy if found else VersionPolicy(), monitoring_dir)
    watcher = None
    if found is not None and model.model_config_file_poll_wait_seconds > 0:
        watcher = ConfigWatcher(model.model_config_file, found,
                                model.model_config_file_poll_wait_seconds, time.monotonic)
    logged = RequestLog(request_log) if request_log is not None else None
    if logged is not None:
        atexit.register(logged.close)  # the server exits on SIGTERM without a lifespan end
        if counted is not None:
            counted.watch_request_log(logged.status)
    shared = Service(name, store, batcher, limits, logged)
    app = FastAPI(
        title=f"{name} model server",
        version="1",
        description=(
            "TensorFlow Serving's REST API (same paths, bodies and status codes) for the "
            f"newest version under `{model.model_dir}`. Predict with the row format "
            "`{\"instances\": [{...}]}` or the columnar format `{\"inputs\": {...}}`; errors "
            "are `{\"error\": \"...\"}`."),
        lifespan=_lifespan(Loader(store, poll_seconds, watcher), shared, grpc_address, token,
                           counted, logged, grpc_threads),
        docs_url=None,  # serving/docs.py serves /docs from local assets
    )
    app.state.store = store
    app.state.batcher = batcher
    app.state.service = shared
    app.state.context = Context(shared, logged, counted)
    for error_type, handler in _ERROR_HANDLERS:
        app.add_exception_handler(error_type, handler)
    # The POST routes first: the router tries routes in order, and :predict is the hot path.
    app.router.routes.extend(rest_predict.routes(limits))
    app.include_router(rest_model.router)
    if counted is not None:
        app.include_router(rest_model.metrics_router)
    ui.install(app, name)
    docs.install(app, f"{name} model server")
    model_card_page.install(app)
    app.openapi = _documented(app, token)  # type: ignore[method-assign]

    # Outermost last: the access log sees every answer (serving/recorder.py).
    if hosts is not None or token:
        app.add_middleware(security.Guard, hosts=hosts, token=token, realm=name)
    if counted is not None or access_log:
        app.add_middleware(Recorder, metrics=counted, log=access_log,
                           version_header=ui.VERSION_HEADER)
    return app
