"""The gRPC server adds the generated code's own handlers for every method of both services
(as generic handlers, the only kind grpc.aio serves), and reads a Predict's inputs in the
order REST reports errors in."""
from __future__ import annotations

from typing import Any, List

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (model_service_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2, prediction_service_pb2_grpc)

from modules import features
from serving import grpc_server


class _Recording:
    """A server that only records the generic handlers added to it."""

    def __init__(self) -> None:
        self.handlers: List[grpc.GenericRpcHandler] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)

    def handler(self, method: str) -> Any:
        found = [h.service(grpc_server._Method(method)) for h in self.handlers]
        return next(h for h in found if h is not None)


def test_every_method_is_served_by_the_generated_handler() -> None:
    server = _Recording()
    predictions = grpc_server.Predictions(shared=None)  # type: ignore[arg-type]
    models = grpc_server.Models(shared=None)  # type: ignore[arg-type]
    grpc_server._register(server, prediction_service_pb2_grpc
                          .add_PredictionServiceServicer_to_server, predictions,
                          prediction_service_pb2.DESCRIPTOR)
    grpc_server._register(server, model_service_pb2_grpc.add_ModelServiceServicer_to_server,
                          models, model_service_pb2.DESCRIPTOR)
    for proto_file in (prediction_service_pb2, model_service_pb2):
        (service,) = proto_file.DESCRIPTOR.services_by_name.values()
        for method in service.methods:
            assert server.handler(f"/{service.full_name}/{method.name}") is not None
    predict = server.handler("/tensorflow.serving.PredictionService/Predict")
    assert predict.unary_unary == predictions.Predict
    assert predict.request_deserializer == predict_pb2.PredictRequest.FromString
    assert predict.response_serializer == predict_pb2.PredictResponse.SerializeToString
    status = server.handler("/tensorflow.serving.ModelService/GetModelStatus")
    assert status.unary_unary == models.GetModelStatus


def test_a_method_the_generated_code_lacks_is_refused_at_start() -> None:
    def add_nothing(servicer: Any, server: Any) -> None:
        pass

    with pytest.raises(RuntimeError, match="serves no /tensorflow.serving.ModelService/"):
        grpc_server._register(_Recording(), add_nothing, None, model_service_pb2.DESCRIPTOR)


class _Features:
    takes_examples = False


def test_inputs_are_read_in_declaration_order_then_unknown_names_sorted() -> None:
    request = predict_pb2.PredictRequest()
    for name in ("zeta", *reversed(features.FEATURE_NAMES), "alpha"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    payload = grpc_server.request_payload(_Features(), request.inputs)
    assert list(payload) == [*features.FEATURE_NAMES, "alpha", "zeta"]
    assert all(values == [1.0] for values in payload.values())
