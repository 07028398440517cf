"""Bad requests beyond the twins of tests/test_serving_grpc.py: a string tensor of a shape
but no values (a protobuf can spell it, JSON cannot), answered as REST answers the values
TensorFlow reads it as; an output_filter naming an output the signature lacks, or one twice,
refused with TF Serving's messages; a bad Regress, whose messages name its `examples`, over
both APIs.

On the session's shared server, with the stock stubs, as tests/test_serving_grpc.py.
"""
from __future__ import annotations

from typing import Any, Iterator

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

from modules import features
from tests.serving_fixtures import JSON, MODEL_NAME, RunningServer
from tests.test_serving_grpc import (COURSE_INSTANCES, PREDICTION_ABS, _columns, _rest,
                                     _regression_request, predict_request)

pytest_plugins = ("tests.serving_fixtures",)


@pytest.fixture(scope="module")
def stub(shared_server: RunningServer) -> Iterator[Any]:
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=120)
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def test_a_string_tensor_without_values_is_read_as_empty_strings(
        stub: Any, client: httpx.Client) -> None:
    """Shape [1], no string_val: TensorFlow reads [''], so the answer is REST's for '' (a
    refusal naming plurality; is_male's missing value; a tf.Example without features)."""
    empty = tf.make_tensor_proto([], dtype=tf.string, shape=[1])
    assert not empty.string_val
    columns = _columns(COURSE_INSTANCES[:1])
    request = predict_request(columns)
    request.inputs["plurality"].CopyFrom(empty)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
    rest = client.post(f"/v1/models/{MODEL_NAME}:predict", headers=JSON,
                       json={"inputs": {**columns, "plurality": [""]}})
    assert rest.status_code == 400 and "plurality" in rest.json()["error"]
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, rest.json()["error"])

    request = predict_request(columns)
    request.inputs["is_male"].CopyFrom(empty)
    over_grpc = tf.make_ndarray(stub.Predict(request, timeout=60).outputs[features.LABEL_KEY])
    np.testing.assert_allclose(
        over_grpc, _rest(client, {"instances": [{**COURSE_INSTANCES[0], "is_male": ""}]}),
        rtol=0, atol=PREDICTION_ABS)

    request = predict_request({"examples": [b""]}, "serving_tf_example")
    request.inputs["examples"].CopyFrom(empty)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
    rest = client.post(f"/v1/models/{MODEL_NAME}:predict", headers=JSON, json={
        "signature_name": "serving_tf_example", "inputs": {"examples": [{"b64": ""}]}})
    assert rest.status_code == 400 and "plurality" in rest.json()["error"]
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, rest.json()["error"])


def test_regress_errors_name_the_examples(stub: Any, client: httpx.Client) -> None:
    """A :regress body holds `examples`: its messages named `instances`, which it has not."""
    late = {**COURSE_INSTANCES[0], "gestation_weeks": 99}
    for examples, named in (([late], "examples[0].gestation_weeks: "),
                            ([], "examples: empty batch")):
        rest = client.post(f"/v1/models/{MODEL_NAME}:regress", headers=JSON, json={
            "signature_name": "regression", "examples": examples})
        assert rest.status_code == 400 and rest.json()["error"].startswith(named), rest.text
        request = _regression_request(examples)
        request.input.example_list.SetInParent()  # an empty list is still a list
        with pytest.raises(grpc.RpcError) as raised:
            stub.Regress(request, timeout=60)
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, rest.json()["error"])


def test_an_output_filter_of_one_output_gets_that_output(stub: Any) -> None:
    predict = predict_request(_columns(COURSE_INSTANCES[:1]))
    predict.output_filter.append(features.LABEL_KEY)
    assert list(stub.Predict(predict, timeout=60).outputs) == [features.LABEL_KEY]


@pytest.mark.parametrize("asked, message", [
    (["height"], "output tensor alias not found in signature: height Outputs expected to be in "
                 "the set {{{outputs}}}."),
    ([features.LABEL_KEY] * 2, f"duplicate output tensor alias: {features.LABEL_KEY}")])
def test_an_output_filter_is_checked_as_tf_serving_checks_it(stub: Any, asked: Any,
                                                             message: str) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    signatures = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(request, timeout=60).metadata["signature_def"].Unpack(signatures)
    outputs = ",".join(sorted(signatures.signature_def["serving_default"].outputs))
    predict = predict_request(_columns(COURSE_INSTANCES[:1]))
    predict.output_filter.extend(asked)
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(predict, timeout=60)
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, message.format(outputs=outputs))
