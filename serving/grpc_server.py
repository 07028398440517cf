"""TF Serving's gRPC API (PredictionService, ModelService) over the REST server's model.

Built from `tensorflow-serving-api`'s generated stubs and messages, on grpc's thread-pool
server in the REST server's process: the same ModelStore, validation and Batcher
(serving/service.py) answer both protocols, so one process holds one copy of each version and
hot reload switches both at once. Errors carry the REST answer's message with the gRPC code TF
Serving uses (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE).

Why threads and not grpc.aio on the REST event loop: a handler thread may block, so a request
that finds the model free is run by the batcher in the handler's own thread
(Batcher.predict_blocking), where on the loop each request crossed from grpc's poller to the
loop, to a model thread and back. Concurrent requests still queue and share model calls with
REST's, as many at once as the pool has threads.
"""
from __future__ import annotations

import base64
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from modules import features
from serving import grpc_tensors, regress, service, validation
from serving.metrics import Metrics
from serving.service import ApiError, Label, Service, Wanted

LOGGER = logging.getLogger("babyweight.serving")
_STATES = get_model_status_pb2.ModelVersionStatus.State
_DECLARED = frozenset(features.FEATURE_NAMES)
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


def _tensor_values(name: str, proto: Any) -> List[Any]:
    """A request tensor as a list of Python values, one per instance (1-D, or [N, 1])."""
    direct = grpc_tensors.direct_values(proto, lambda index: ApiError(
        400, f"inputs.{name}[{index}]: is not UTF-8 text"))
    if direct is not None:
        return direct
    try:
        array = tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise ApiError(400, f"inputs.{name}: not a valid TensorProto ({error})") from None
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ApiError(400, f"inputs.{name}: expected a tensor of shape [batch] (one value "
                       f"per instance), got shape {list(array.shape)}")
    if array.dtype == object:
        values = []
        for index, value in enumerate(array.tolist()):
            try:
                values.append(value.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, f"inputs.{name}[{index}]: is not UTF-8 text") from None
        return values
    if array.dtype == np.bool_:
        return [bool(v) for v in array]
    return [v.item() for v in array]


def request_payload(found: Any, inputs: Any) -> Dict[str, List[Any]]:
    """gRPC inputs -> the columnar JSON payload REST would have got (same checks, messages)."""
    if found.takes_examples:
        examples = inputs.get(validation.EXAMPLES_INPUT)
        if examples is None or len(inputs) != 1:
            raise ApiError(400, f"inputs: expected exactly one input "
                           f"{validation.EXAMPLES_INPUT!r} of serialized tf.Examples")
        try:
            array = tf.make_ndarray(examples).reshape(-1)
        except (TypeError, ValueError) as error:
            raise ApiError(400, f"inputs.examples: not a valid TensorProto ({error})") from None
        if array.dtype != object:
            raise ApiError(400, "inputs.examples: expected a string tensor of serialized "
                           "tf.Examples")
        return {validation.EXAMPLES_INPUT: [{"b64": base64.b64encode(v).decode()}
                                            for v in array.tolist()]}
    # A protobuf map has no order: the declaration's order makes the first error reported
    # the one REST reports for the same columns sent in that order (names the declaration
    # does not have after its own, sorted). Iterating the map is its slow part: only then.
    names = [name for name in features.FEATURE_NAMES if name in inputs]
    if len(names) != len(inputs):
        names += sorted(name for name in inputs if name not in _DECLARED)
    return {name: _tensor_values(name, inputs[name]) for name in names}


class Predictions(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService on the shared Service."""

    def __init__(self, shared: Service, metrics: Optional[Metrics] = None) -> None:
        self.shared = shared
        self.metrics = metrics

    def Predict(self, request: predict_pb2.PredictRequest,
                context: grpc.ServicerContext) -> predict_pb2.PredictResponse:
        def answer() -> predict_pb2.PredictResponse:
            spec = request.model_spec
            served = self.shared.acquire(spec.name, _version(spec))
            try:
                name = spec.signature_name or validation.DEFAULT_SIGNATURE
                found = service.signature(served, name)
                payload = request_payload(found, request.inputs)
                columns, rows = service.predict_columns(found, name, payload, False,
                                                        self.shared.limits.max_instances)
                outputs = self.shared.call_blocking(served, name, columns, rows)
            finally:
                self.shared.release(served)
            response = predict_pb2.PredictResponse()
            response.model_spec.name = self.shared.name
            response.model_spec.version.value = served.version
            response.model_spec.signature_name = name
            wanted = set(request.output_filter)
            for key, value in outputs.items():
                if not wanted or key in wanted:
                    grpc_tensors.fill_output(response.outputs[key], value)
            return response
        return _guarded(context, answer, "predict", self.metrics)

    def Regress(self, request: regression_pb2.RegressionRequest,
                context: grpc.ServicerContext) -> regression_pb2.RegressionResponse:
        def answer() -> regression_pb2.RegressionResponse:
            version, values = regress.regress_blocking(
                self.shared, request.model_spec.name, _version(request.model_spec),
                request.model_spec.signature_name, regress.examples_of(request.input))
            response = regression_pb2.RegressionResponse()
            _fill_spec(response.model_spec, request.model_spec, self.shared.name, version)
            for value in values:
                response.result.regressions.add().value = value
            return response
        return _guarded(context, answer, "regress", self.metrics)

    def Classify(self, request: classification_pb2.ClassificationRequest,
                 context: grpc.ServicerContext) -> classification_pb2.ClassificationResponse:
        def answer() -> classification_pb2.ClassificationResponse:
            regress.classify(self.shared, request.model_spec.name,
                             _version(request.model_spec), request.model_spec.signature_name)
            return classification_pb2.ClassificationResponse()
        return _guarded(context, answer, "classify", self.metrics)

    def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                         context: grpc.ServicerContext
                         ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        def answer() -> get_model_metadata_pb2.GetModelMetadataResponse:
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
        return _guarded(context, answer, "metadata", self.metrics)


class Models(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService: GetModelStatus and HandleReloadConfigRequest (when
    given `reload`, serving/reload_config.py's, which applies a ModelServerConfig)."""

    def __init__(self, shared: Service, metrics: Optional[Metrics] = None,
                 reload: Optional[Callable[[Any], None]] = None) -> None:
        self.shared = shared
        self.metrics = metrics
        self.reload = reload

    def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                  context: grpc.ServicerContext
                                  ) -> model_management_pb2.ReloadConfigResponse:
        def answer() -> model_management_pb2.ReloadConfigResponse:
            if self.reload is None:
                raise ApiError(405, "HandleReloadConfigRequest is not served here")
            self.reload(request.config)
            return model_management_pb2.ReloadConfigResponse()  # status: OK
        return _guarded(context, answer, "reload_config", self.metrics)

    def GetModelStatus(self, request: get_model_status_pb2.GetModelStatusRequest,
                       context: grpc.ServicerContext
                       ) -> get_model_status_pb2.GetModelStatusResponse:
        def answer() -> get_model_status_pb2.GetModelStatusResponse:
            found = self.shared.statuses(request.model_spec.name, _version(request.model_spec))
            response = get_model_status_pb2.GetModelStatusResponse()
            for status in found:
                entry = response.model_version_status.add()
                entry.version = status.version
                entry.state = _STATES.Value(status.state)
                entry.status.error_code = _ERROR_CODES.get(status.error_code, 2)
                entry.status.error_message = status.error_message
            return response
        return _guarded(context, answer, "status", self.metrics)


def _fill_spec(target: model_pb2.ModelSpec, asked: model_pb2.ModelSpec, name: str,
               version: int) -> None:
    target.name = name
    target.version.value = version
    target.signature_name = asked.signature_name


def _guarded(context: grpc.ServicerContext, answer: Callable[[], Any], api: str,
             metrics: Optional[Metrics]) -> Any:
    """Runs a handler; client mistakes become TF Serving's status codes, never INTERNAL."""
    started = time.perf_counter()
    code, version = "UNKNOWN", ""
    try:
        response = answer()
        code = "OK"
        if ("model_spec" in response.DESCRIPTOR.fields_by_name
                and response.model_spec.HasField("version")):
            version = str(response.model_spec.version.value)
        return response
    except ApiError as error:
        code = error.grpc_code
        context.abort(getattr(grpc.StatusCode, code), error.message)
    except validation.RequestError as error:
        code = "INVALID_ARGUMENT"
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, error.message)
    finally:
        if metrics is not None:
            metrics.observe(api, "grpc", code, version, time.perf_counter() - started)


class _Token(grpc.ServerInterceptor):
    """The REST server's bearer token, as gRPC metadata 'authorization: Bearer <token>'."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        def refuse(_: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong bearer token (metadata 'authorization')")
        self._refuse = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(sent.encode(), self._expected):
            return continuation(details)
        return self._refuse


class _Collected:
    """Stands in for the server in a generated add_*Servicer_to_server call: keeps the
    generic handler it would have added."""

    def __init__(self) -> None:
        self.handlers: List[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)


class _Method(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def _register(server: grpc.Server, add: Callable[[Any, Any], None], servicer: Any,
              proto_file: Any) -> None:
    """The generated code's handlers (its deserializers and serializers) for every method of
    the file's service, registered by name rather than as a generic handler.

    Why: grpc matches a registered method in its core and hands the call to its handler,
    where a generic handler is asked in Python, per call, whether it serves the method.
    """
    collected = _Collected()
    add(servicer, collected)
    (service,) = proto_file.services_by_name.values()
    handlers = {}
    for method in service.methods:
        details = _Method(f"/{service.full_name}/{method.name}")
        found = [h for h in (g.service(details) for g in collected.handlers) if h is not None]
        if not found:
            raise RuntimeError(f"the generated code serves no {details.method}")
        handlers[method.name] = found[0]
    server.add_registered_method_handlers(service.full_name, handlers)


def start(shared: Service, address: str, token: Optional[str] = None,
          metrics: Optional[Metrics] = None, threads: int = 32,
          reload: Optional[Callable[[Any], None]] = None) -> Tuple[grpc.Server, int]:
    """Starts the gRPC server on `address` (host:port, port 0 = any) with `threads` handler
    threads (the most requests in progress at once); returns it and its port. `reload`
    applies a HandleReloadConfigRequest's config (None: that call is refused)."""
    server = grpc.server(
        ThreadPoolExecutor(max(1, threads), thread_name_prefix="grpc"),
        interceptors=[_Token(token)] if token else None,
        options=[("grpc.max_receive_message_length", shared.limits.max_body_bytes)])
    _register(server, prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server,
              Predictions(shared, metrics), prediction_service_pb2.DESCRIPTOR)
    _register(server, model_service_pb2_grpc.add_ModelServiceServicer_to_server,
              Models(shared, metrics, reload), model_service_pb2.DESCRIPTOR)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind"
        port = 0
    if port == 0:
        raise OSError(f"cannot bind the gRPC port {address} (address already in use?)")
    server.start()
    LOGGER.info("gRPC (tensorflow.serving.PredictionService, ModelService) on %s", address)
    return server, port
