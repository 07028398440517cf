"""TF Serving's gRPC API (PredictionService, ModelService) over the REST server's model.

Built from `tensorflow-serving-api`'s generated stubs and messages, on grpc.aio in the REST
server's process: the same ModelStore, validation and Batcher (serving/service.py) answer both
protocols, so one process holds one copy of each version and hot reload switches both at once.
Errors carry the REST answer's message with the gRPC code TF Serving uses (INVALID_ARGUMENT,
NOT_FOUND, UNAVAILABLE).

Why grpc.aio on an event loop of its own thread, and not grpc's thread-pool server: the pool
hands every call from grpc's polling thread to a handler thread, and again when the request's
message arrives, where the loop reads, answers and writes each call in one thread (status and
metadata calls entirely). A Predict that is the only gRPC request in progress, with the model
free, runs the model on the loop itself (Service.call_now), so a lone request crosses no
thread; otherwise it awaits the shared batcher (model calls in its threads), so the loop keeps
taking requests that then share model calls with each other and with REST's. Its own loop,
not REST's: that model call blocks it.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Tuple

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from serving import grpc_tensors, regress, service, validation
from serving.grpc_tensors import request_payload
from serving.metrics import Metrics
from serving.service import ApiError, Label, Service, Wanted

LOGGER = logging.getLogger("babyweight.serving")
_STATES = get_model_status_pb2.ModelVersionStatus.State
_ERROR_CODES = {"OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "NOT_FOUND": 5,
                "FAILED_PRECONDITION": 9, "UNIMPLEMENTED": 12, "INTERNAL": 13,
                "UNAVAILABLE": 14, "DATA_LOSS": 15}


def _version(spec: model_pb2.ModelSpec) -> Wanted:
    """A ModelSpec's version choice: a number, a label (service.Label), or None (latest)."""
    if spec.WhichOneof("version_choice") == "version":
        return spec.version.value
    if spec.WhichOneof("version_choice") == "version_label":
        return Label(spec.version_label)
    return None


def _output_filter(names: Sequence[str], asked: Sequence[str]) -> Set[str]:
    """The outputs a Predict asked for (empty: all), or TF Serving's error for an alias the
    signature lacks or one asked twice: checked before the model runs, as TF Serving does."""
    wanted: Set[str] = set()
    for alias in asked:
        if alias not in names:
            raise ApiError(400, f"output tensor alias not found in signature: {alias} Outputs "
                           f"expected to be in the set {{{','.join(sorted(names))}}}.")
        if alias in wanted:
            raise ApiError(400, f"duplicate output tensor alias: {alias}")
        wanted.add(alias)
    return wanted


class Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService on the shared Service."""

    def __init__(self, shared: Service, metrics: Optional[Metrics] = None,
                 slots: Optional[asyncio.Semaphore] = None) -> None:
        self.shared = shared
        self.metrics = metrics
        self.slots = slots
        self.predicting = 0  # Predict calls from their start until grpc has finished them

    def _finished(self, _: Any) -> None:
        self.predicting -= 1

    async def _outputs(self, served: Any, name: str, columns: validation.Columns,
                       rows: int) -> Dict[str, np.ndarray]:
        """Called here when this is the only Predict in progress and the model is free (a
        pass of the loop first lets the calls that are ready start and be counted); else
        through the batcher, so the loop takes other requests meanwhile and they batch."""
        await asyncio.sleep(0)
        if self.predicting == 1:
            outputs = self.shared.call_now(served, name, columns, rows)
            if outputs is not None:
                return outputs
        return await self.shared.call(served, name, columns, rows)

    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        self.predicting += 1
        context.add_done_callback(self._finished)

        async def answer() -> predict_pb2.PredictResponse:
            spec = request.model_spec
            served = self.shared.acquire(spec.name, _version(spec))
            try:
                name = spec.signature_name or validation.DEFAULT_SIGNATURE
                found = service.signature(served, name)
                payload = request_payload(found, request.inputs)
                columns, rows = service.predict_columns(found, name, payload, False,
                                                        self.shared.limits.max_instances)
                wanted = _output_filter(found.output_names, request.output_filter)
                outputs = await self._outputs(served, name, columns, rows)
            finally:
                self.shared.release(served)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.shared.name
            response.model_spec.version.value = served.version
            response.model_spec.signature_name = name
            for key, value in outputs.items():
                if not wanted or key in wanted:
                    grpc_tensors.fill_output(response.outputs[key], value)
            return response
        return await _guarded(context, answer, "predict", self.metrics, self.slots)

    async def Regress(self, request: regression_pb2.RegressionRequest,
                      context: grpc.aio.ServicerContext) -> regression_pb2.RegressionResponse:
        async def answer() -> regression_pb2.RegressionResponse:
            version, values = await regress.regress(
                self.shared, request.model_spec.name, _version(request.model_spec),
                request.model_spec.signature_name, regress.examples_of(request.input))
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, request.model_spec, self.shared.name, version)
            for value in values:
                response.result.regressions.add().value = value
            return response
        return await _guarded(context, answer, "regress", self.metrics, self.slots)

    async def Classify(self, request: classification_pb2.ClassificationRequest,
                       context: grpc.aio.ServicerContext
                       ) -> classification_pb2.ClassificationResponse:
        async def answer() -> classification_pb2.ClassificationResponse:
            regress.classify(self.shared, request.model_spec.name,
                             _version(request.model_spec), request.model_spec.signature_name)
            return classification_pb2.ClassificationResponse()
        return await _guarded(context, answer, "classify", self.metrics, self.slots)

    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context: grpc.aio.ServicerContext
                               ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        async def answer() -> get_model_metadata_pb2.GetModelMetadataResponse:
            if not request.metadata_field:  # TF Serving's checks and messages
                raise ApiError(400, "GetModelMetadataRequest must specify at least one "
                               "metadata_field")
            for field in request.metadata_field:
                if field != "signature_def":
                    raise ApiError(400, f"Metadata field {field} is not supported")
            version, defs = self.shared.metadata(request.model_spec.name,
                                                 _version(request.model_spec))
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, value in defs.items():
                json_format.ParseDict(value, signature_map.signature_def[key],
                                      ignore_unknown_fields=True)
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _fill_spec(response.model_spec, request.model_spec, self.shared.name, version)
            response.metadata["signature_def"].Pack(signature_map)
            return response
        return await _guarded(context, answer, "metadata", self.metrics, self.slots)


class Models(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest (when
    given `reload`, serving/reload_config.py's, which applies a ModelServerConfig; it waits
    for the loader, so it runs in a thread)."""

    def __init__(self, shared: Service, metrics: Optional[Metrics] = None,
                 reload: Optional[Callable[[Any], None]] = None,
                 slots: Optional[asyncio.Semaphore] = None) -> None:
        self.shared = shared
        self.metrics = metrics
        self.reload = reload
        self.slots = slots

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context: grpc.aio.ServicerContext
                                        ) -> model_management_pb2.ReloadConfigResponse:
        async def answer() -> model_management_pb2.ReloadConfigResponse:
            if self.reload is None:
                raise ApiError(405, "HandleReloadConfigRequest is not served here")
            await asyncio.to_thread(self.reload, request.config)
            return model_management_pb2.ReloadConfigResponse()  # status: OK
        return await _guarded(context, answer, "reload_config", self.metrics, self.slots)

    async def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                             context: grpc.aio.ServicerContext
                             ) -> get_model_status_pb2.GetModelStatusResponse:
        async def answer() -> get_model_status_pb2.GetModelStatusResponse:
            found = self.shared.statuses(request.model_spec.name, _version(request.model_spec))
            response = get_model_status_pb2.GetModelStatusResponse()
            for status in found:
                entry = response.model_version_status.add()
                entry.version = status.version
                entry.state = _STATES.Value(status.state)
                entry.status.error_code = _ERROR_CODES.get(status.error_code, 2)
                entry.status.error_message = status.error_message
            return response
        return await _guarded(context, answer, "status", self.metrics, self.slots)


def _fill_spec(target: model_pb2.ModelSpec, asked: model_pb2.ModelSpec, name: str,
               version: int) -> None:
    target.name = name
    target.version.value = version
    target.signature_name = asked.signature_name


async def _guarded(context: grpc.aio.ServicerContext, answer: Callable[[], Awaitable[Any]],
                   api: str, metrics: Optional[Metrics],
                   slots: Optional[asyncio.Semaphore]) -> Any:
    """Runs a handler (once one of `slots` is free); client mistakes become TF Serving's
    status codes, never INTERNAL.

    Each request is counted before its answer or status leaves: the metrics are scraped over
    REST, on another thread, so a count made after `context.abort` sent the status could be
    missing from a scrape the client makes right after its error."""
    started = time.perf_counter()

    def observe(code: str, version: str = "") -> None:
        if metrics is not None:
            metrics.observe(api, "grpc", code, version, time.perf_counter() - started)

    try:
        if slots is None:
            response = await answer()
        else:
            async with slots:
                response = await answer()
    except ApiError as error:
        code, message = error.grpc_code, error.message
    except validation.RequestError as error:
        code, message = "INVALID_ARGUMENT", error.message
    except asyncio.CancelledError:  # the client went away
        observe("CANCELLED")
        raise
    except BaseException:
        observe("UNKNOWN")
        raise
    else:
        has_version = ("model_spec" in response.DESCRIPTOR.fields_by_name
                       and response.model_spec.HasField("version"))
        observe("OK", str(response.model_spec.version.value) if has_version else "")
        return response
    observe(code)
    await context.abort(getattr(grpc.StatusCode, code), message)


class _Token(grpc.aio.ServerInterceptor):
    """The REST server's bearer token, as gRPC metadata 'authorization: Bearer <token>'."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def refuse(_: Any, context: grpc.aio.ServicerContext) -> None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "missing or wrong bearer token (metadata 'authorization')")
        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(sent.encode(), self._expected):
            return await continuation(details)
        return self._refuse


class _Collected:
    """Stands in for the server in a generated add_*Servicer_to_server call: keeps the
    generic handlers it adds (and ignores its registered ones, as grpc.aio does)."""

    def __init__(self) -> None:
        self.handlers: List[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        pass


class _Method(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _register(server: Any, add: Callable[[Any, Any], None], servicer: Any,
              proto_file: Any) -> None:
    """The generated code's handlers (its deserializers and serializers) for the file's
    service, added to `server` once each method of the service is checked to have one.

    Why the check: grpc.aio serves only generic handlers (it ignores registered ones), and a
    method the generated code of an older tensorflow-serving-api lacks would otherwise be
    UNIMPLEMENTED only when called.
    """
    collected = _Collected()
    add(servicer, collected)
    (service,) = proto_file.services_by_name.values()
    for method in service.methods:
        details = _Method(f"/{service.full_name}/{method.name}")
        if not any(h.service(details) is not None for h in collected.handlers):
            raise RuntimeError(f"the generated code serves no {details.method}")
    server.add_generic_rpc_handlers(collected.handlers)


class Running:
    """The gRPC server on its event loop's thread; `stop` ends both."""

    def __init__(self, server: grpc.aio.Server, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread) -> None:
        self.server, self.loop, self.thread = server, loop, thread

    def stop(self, grace: Optional[float]) -> None:
        """Refuses new calls, lets those in progress finish for `grace` seconds (None: until
        they are done), then ends the loop."""
        try:
            asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop).result()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join()
            self.loop.close()


async def _serve(shared: Service, address: str, token: Optional[str],
                 metrics: Optional[Metrics], threads: int,
                 reload: Optional[Callable[[Any], None]]) -> Tuple[grpc.aio.Server, int]:
    slots = asyncio.Semaphore(max(1, threads))
    server = grpc.aio.server(
        interceptors=[_Token(token)] if token else None,
        # grpc binds with SO_REUSEPORT by default: a second server on the same --grpc-port (two
        # models' servers both left at 8500) would bind too, and the kernel would deal the
        # calls between the two models without a word. Off, the second one fails to start.
        options=[("grpc.max_receive_message_length", shared.limits.max_body_bytes),
                 ("grpc.so_reuseport", 0)])
    _register(server, prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
              Predictions(shared, metrics, slots), prediction_service_pb2.DESCRIPTOR)
    _register(server, model_service_pb2_grpc.add_ModelServiceServicer_to_server,
              Models(shared, metrics, reload, slots), model_service_pb2.DESCRIPTOR)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        raise OSError(f"cannot bind the gRPC port {address} (address already in use?)")
    await server.start()
    return server, port


def start(shared: Service, address: str, token: Optional[str] = None,
          metrics: Optional[Metrics] = None, threads: int = 32,
          reload: Optional[Callable[[Any], None]] = None) -> Tuple[Running, int]:
    """Starts the gRPC server on `address` (host:port, port 0 = any) on a new event loop
    thread, with at most `threads` calls in progress at once (more wait); returns it and its
    port. `reload` applies a HandleReloadConfigRequest's config (None: that call is
    refused)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc", daemon=True)
    thread.start()
    try:
        server, port = asyncio.run_coroutine_threadsafe(
            _serve(shared, address, token, metrics, threads, reload), loop).result()
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()
        raise
    LOGGER.info("gRPC (tensorflow.serving.PredictionService, ModelService) on %s", address)
    return Running(server, loop, thread), port
