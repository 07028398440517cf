"""The gRPC server registers the generated code's own handlers for every method of both
services, and reads a Predict's inputs in the order REST reports errors in."""
from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
from tensorflow_serving.apis import (model_service_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2, prediction_service_pb2_grpc)

from modules import features
from serving import grpc_server


class _Recording:
    """A server that only records what is registered on it."""

    def __init__(self) -> None:
        self.registered: Dict[str, Dict[str, Any]] = {}

    def add_registered_method_handlers(self, service: str, handlers: Dict[str, Any]) -> None:
        self.registered[service] = handlers


def test_every_method_is_registered_with_the_generated_handler() -> None:
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
        assert set(server.registered[service.full_name]) == {m.name for m in service.methods}
    predict = server.registered["tensorflow.serving.PredictionService"]["Predict"]
    assert predict.unary_unary == predictions.Predict
    assert predict.request_deserializer == predict_pb2.PredictRequest.FromString
    assert predict.response_serializer == predict_pb2.PredictResponse.SerializeToString
    status = server.registered["tensorflow.serving.ModelService"]["GetModelStatus"]
    assert status.unary_unary == models.GetModelStatus


class _Features:
    takes_examples = False


def test_inputs_are_read_in_declaration_order_then_unknown_names_sorted() -> None:
    request = predict_pb2.PredictRequest()
    for name in ("zeta", *reversed(features.FEATURE_NAMES), "alpha"):
        request.inputs[name].CopyFrom(tf.make_tensor_proto([1.0], dtype=tf.float32))
    payload = grpc_server.request_payload(_Features(), request.inputs)
    assert list(payload) == [*features.FEATURE_NAMES, "alpha", "zeta"]
    assert all(values == [1.0] for values in payload.values())
