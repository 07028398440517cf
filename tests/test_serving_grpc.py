"""TF Serving's gRPC API and Regress/Classify, over the same server process as REST.

Called with the stock stubs of `tensorflow-serving-api`; each gRPC answer is compared with the
REST answer for the same rows, and each REST bad request of test_serving_predict has a twin
here answered with TF Serving's status code and the same message.
"""
from __future__ import annotations

import asyncio
import base64
from typing import Any, Dict, Iterator, List

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from modules import features
from tests.serving_fixtures import (JSON, MAX_INSTANCES, MODEL_NAME, RunningServer,
                                    ServingModels, instance_example)
from tests.test_serving_predict import BAD_REQUESTS, CANONICAL
from tests.tolerances import prediction_abs

pytest_plugins = ("tests.serving_fixtures",)
PREDICTION_ABS = prediction_abs()

# The course's web app's four kinds of question: known sex, unknown sex, twins, several.
COURSE_INSTANCES = [
    {"is_male": "True", "mother_age": 26.0, "plurality": "Single(1)", "gestation_weeks": 39},
    {"is_male": "False", "mother_age": 29.0, "plurality": "Single(1)", "gestation_weeks": 38},
    {"is_male": "Unknown", "mother_age": 26.0, "plurality": "Twins(2)", "gestation_weeks": 39},
    {"is_male": "Unknown", "mother_age": 30.0, "plurality": "Multiple(2+)",
     "gestation_weeks": 37}]


@pytest.fixture(scope="module")
def channel(shared_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(shared_server.grpc_target) as result:
        grpc.channel_ready_future(result).result(timeout=120)
        yield result


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> prediction_service_pb2_grpc.PredictionServiceStub:
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=30) as result:
        yield result


def _columns(instances: List[Dict[str, Any]]) -> Dict[str, Any]:
    return {name: [i[name] for i in instances] for name in instances[0]}


def predict_request(inputs: Dict[str, Any], signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    for name, values in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(values))
    return request


def _rest(client: httpx.Client, body: Dict[str, Any]) -> List[float]:
    answer = client.post(f"/v1/models/{MODEL_NAME}:predict", json=body, headers=JSON)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_course_instances_same_over_grpc_and_rest(stub: Any, client: httpx.Client) -> None:
    request = predict_request(_columns(COURSE_INSTANCES))
    response = stub.Predict(request, timeout=60)
    over_grpc = tf.make_ndarray(response.outputs[features.LABEL_KEY])
    over_rest = _rest(client, {"instances": COURSE_INSTANCES})
    assert len(over_grpc) == len(COURSE_INSTANCES)
    np.testing.assert_allclose(over_grpc, over_rest, rtol=0, atol=PREDICTION_ABS)
    assert response.model_spec.name == MODEL_NAME and response.model_spec.version.value == 1


def test_tf_example_signature_over_grpc(stub: Any, client: httpx.Client,
                                        serving_models: ServingModels) -> None:
    instances = serving_models.instances[:5]
    examples = [instance_example(i).SerializeToString() for i in instances]
    response = stub.Predict(predict_request({"examples": examples}, "serving_tf_example"),
                            timeout=60)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs[features.LABEL_KEY]),
                               _rest(client, {"instances": instances}), rtol=0,
                               atol=PREDICTION_ABS)


def _grpc_twin(body: Any) -> Any:
    """The gRPC request for a REST bad-request body, or None where gRPC has no such request
    (raw bytes: JSON syntax and body size, which a protobuf cannot carry)."""
    if not isinstance(body, dict):
        return None
    signature = body.get("signature_name", "")
    if "instances" in body and "inputs" in body:
        return None  # one map of inputs in gRPC: no second format to mix
    if signature == "serving_tf_example":
        values = [base64.b64decode(v["b64"]) if _is_b64(v["b64"]) else b"%%"
                  for v in body["instances"]]
        return predict_request({"examples": values}, signature)
    if "inputs" in body:
        return predict_request(body["inputs"], signature)
    instances = body["instances"]
    if not instances or not all(isinstance(i, dict) for i in instances):
        return None  # an empty or non-object list has no tensor form
    names = {k for i in instances for k in i}
    if any(v is None for i in instances for v in i.values()):
        return None  # a tensor has no nulls
    if any(set(i) != names for i in instances) or any(
            isinstance(v, (int, float)) != isinstance(instances[0][k], (int, float))
            for i in instances for k, v in i.items()):
        instances = instances[-1:]  # a tensor has one type and length: the wrong row alone
    return predict_request(_columns(instances), signature)


def _is_b64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
        return True
    except ValueError:
        return False


TWINS = [(name, body, words) for name, body, words in BAD_REQUESTS if _grpc_twin(body)]


@pytest.mark.parametrize("body,words", [(b, w) for _, b, w in TWINS],
                         ids=[name for name, _, _ in TWINS])
def test_bad_requests_get_invalid_argument_with_the_rest_message(
        stub: Any, client: httpx.Client, body: Any, words: List[str]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_grpc_twin(body), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    for word in words:  # a REST location (instances[1].x) is inputs.x[1] here: the field
        if word.startswith(("instances", "inputs")):
            word = word.split(".")[-1] if "." in word else ""
        assert word.split("[")[0] in raised.value.details(), raised.value.details()


def test_every_kind_of_rest_bad_request_has_a_twin() -> None:
    """The twins cover the checks, not only the easy ones: each family of message is tested."""
    covered = {name for name, _, _ in TWINS}
    for needed in ("missing required", "columnar missing plurality", "wrong type",
                   "out of vocabulary", "above range",
                   "unknown feature", "columnar lengths", "unknown signature",
                   "tf.Example missing plurality", "bad b64 example", "oversized batch"):
        assert needed in covered, needed


def test_rest_and_grpc_messages_are_identical_for_columnar_requests(
        stub: Any, client: httpx.Client) -> None:
    inputs = {"mother_age": [26.0, 27.0], "gestation_weeks": [39.0]}
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(predict_request(inputs), timeout=60)
    rest = client.post(f"/v1/models/{MODEL_NAME}:predict", json={"inputs": inputs},
                       headers=JSON)
    assert rest.status_code == 400 and raised.value.details() == rest.json()["error"]


def test_unknown_model_and_version_are_not_found(stub: Any, client: httpx.Client) -> None:
    request = predict_request(_columns(COURSE_INSTANCES))
    request.model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == client.post(
        "/v1/models/other:predict", json={"instances": COURSE_INSTANCES}).json()["error"]
    request.model_spec.name = MODEL_NAME
    request.model_spec.version.value = 7
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == client.post(
        f"/v1/models/{MODEL_NAME}/versions/7:predict",
        json={"instances": COURSE_INSTANCES}, headers=JSON).json()["error"]


def test_oversized_batch_over_grpc(stub: Any) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(predict_request(_columns([CANONICAL] * (MAX_INSTANCES + 1))), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"limit of {MAX_INSTANCES}" in raised.value.details()


def test_metadata_and_status_match_rest(stub: Any, channel: grpc.Channel,
                                        client: httpx.Client) -> None:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = stub.GetModelMetadata(request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    rest = client.get(f"/v1/models/{MODEL_NAME}/metadata").json()
    assert set(signatures.signature_def) == set(
        rest["metadata"]["signature_def"]["signature_def"])
    assert signatures.signature_def["regression"].method_name == "tensorflow/serving/regress"
    assert response.model_spec.version.value == int(rest["model_spec"]["version"])
    for fields, message in (([], "GetModelMetadataRequest must specify at least one "
                                 "metadata_field"),
                            (["signature_def", "x"], "Metadata field x is not supported")):
        del request.metadata_field[:]
        request.metadata_field.extend(fields)
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetModelMetadata(request, timeout=60)
        assert (raised.value.code(), raised.value.details()) == (
            grpc.StatusCode.INVALID_ARGUMENT, message)

    models = model_service_pb2_grpc.ModelServiceStub(channel)
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL_NAME
    found = models.GetModelStatus(status_request, timeout=60).model_version_status
    rest_status = client.get(f"/v1/models/{MODEL_NAME}").json()["model_version_status"]
    assert [(str(s.version), get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
            for s in found] == [(s["version"], s["state"]) for s in rest_status]
    status_request.model_spec.version.value = 9
    with pytest.raises(grpc.RpcError) as raised:
        models.GetModelStatus(status_request, timeout=60)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == client.get(
        f"/v1/models/{MODEL_NAME}/versions/9").json()["error"]


# ------------------------------------------------------------------------------------------------
# Regress and Classify
# ------------------------------------------------------------------------------------------------

def _regression_request(instances: List[Dict[str, Any]], signature: str = "regression"
                        ) -> regression_pb2.RegressionRequest:
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    for instance in instances:
        request.input.example_list.examples.add().CopyFrom(instance_example(instance))
    return request


def test_regress_over_grpc_and_rest_equals_predict(stub: Any, client: httpx.Client,
                                                   serving_models: ServingModels) -> None:
    instances = serving_models.instances[:6]
    expected = _rest(client, {"instances": instances})
    over_grpc = [r.value for r in stub.Regress(_regression_request(instances),
                                               timeout=60).result.regressions]
    np.testing.assert_allclose(over_grpc, expected, rtol=0, atol=PREDICTION_ABS)
    answer = client.post(f"/v1/models/{MODEL_NAME}:regress", headers=JSON, json={
        "signature_name": "regression", "context": {"mother_age": int(instances[0]["mother_age"])},
        "examples": [{k: (int(v) if isinstance(v, float) else v) for k, v in i.items()
                      if k != "mother_age"} for i in instances[:1]]})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["result"], expected[:1], rtol=0,
                               atol=PREDICTION_ABS)


def test_regress_and_classify_errors_are_tf_servings(stub: Any, client: httpx.Client) -> None:
    with pytest.raises(grpc.RpcError) as raised:  # serving_default is a predict signature
        stub.Regress(_regression_request(COURSE_INSTANCES[:1], ""), timeout=60)
    message = ("Expected regression signature method_name to be tensorflow/serving/regress. "
               "Was: tensorflow/serving/predict")
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, message)
    rest = client.post(f"/v1/models/{MODEL_NAME}:regress", headers=JSON,
                       json={"examples": [{"mother_age": 26}]})
    assert (rest.status_code, rest.json()) == (400, {"error": message})

    bad = _regression_request([{**CANONICAL, "plurality": "Twins"}])
    with pytest.raises(grpc.RpcError) as raised:
        stub.Regress(bad, timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "vocabulary" in raised.value.details()

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "regression"
    with pytest.raises(grpc.RpcError) as raised:
        stub.Classify(request, timeout=60)
    message = ("Expected classification signature method_name to be "
               "tensorflow/serving/classify. Was: tensorflow/serving/regress")
    assert (raised.value.code(), raised.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT, message)
    rest = client.post(f"/v1/models/{MODEL_NAME}:classify", headers=JSON,
                       json={"signature_name": "regression", "examples": [{}]})
    assert (rest.status_code, rest.json()) == (400, {"error": message})


# ------------------------------------------------------------------------------------------------
# Hot reload, the bearer token, nothing loaded yet
# ------------------------------------------------------------------------------------------------

def test_grpc_follows_hot_reload_and_needs_the_token(stand_in_models: ServingModels,
                                                     server_factory: Any, tmp_path: Any) -> None:
    from tests.serving_fixtures import wait_for

    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    good = {"Authorization": "Bearer s3cret-token"}
    model_dir = stand_in_models.serving_dir(tmp_path)
    server = server_factory(model_dir, "--auth-token-file", str(token_file),
                            "--poll-seconds", "0.5", "--load-cpu-share", "1", headers=good)
    request = predict_request(_columns(COURSE_INSTANCES))
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=60, metadata=metadata)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
        token = (("authorization", "Bearer s3cret-token"),)
        assert stub.Predict(request, timeout=60, metadata=token).model_spec.version.value == 1
        stand_in_models.push(model_dir, 2)

        def answered_by_2() -> bool:
            return stub.Predict(request, timeout=60,
                                metadata=token).model_spec.version.value == 2
        wait_for(answered_by_2)
        with httpx.Client(base_url=server.url, timeout=30, headers=good) as session:
            rest = _rest(session, {"instances": COURSE_INSTANCES})
        np.testing.assert_allclose(
            tf.make_ndarray(stub.Predict(request, timeout=60, metadata=token)
                            .outputs[features.LABEL_KEY]), rest, rtol=0, atol=PREDICTION_ABS)


def test_unavailable_until_a_version_loads(tmp_path: Any) -> None:
    """Nothing loaded yet: gRPC's UNAVAILABLE with REST's 503 message (in process, no load)."""
    from serving.batching import Batcher
    from serving.grpc_server import Predictions
    from serving.service import Service
    from serving.settings import LimitsConfig
    from serving.version_manager import ModelStore

    shared = Service(MODEL_NAME, ModelStore(str(tmp_path), manage_heap=False), Batcher(),
                     LimitsConfig())

    class Context:
        async def abort(self, code: grpc.StatusCode, details: str) -> None:
            raise RuntimeError(code, details)

        def add_done_callback(self, callback: Any) -> None:
            pass

    with pytest.raises(RuntimeError) as raised:
        asyncio.run(Predictions(shared).Predict(predict_request(_columns(COURSE_INSTANCES)),
                                                Context()))
    code, details = raised.value.args
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details.startswith(f"No version of model {MODEL_NAME!r} is loaded yet")
    shared.batcher.close()


def test_concurrent_grpc_requests_each_get_their_own_rows(stub: Any, client: httpx.Client
                                                          ) -> None:
    """Many requests at once, batched together with each other: every answer is the one REST
    gives for that request's rows alone."""
    from concurrent.futures import ThreadPoolExecutor

    expected = [_rest(client, {"instances": [instance]}) for instance in COURSE_INSTANCES]

    def ask(index: int) -> List[float]:
        request = predict_request(_columns([COURSE_INSTANCES[index % 4]]))
        return tf.make_ndarray(stub.Predict(request, timeout=60)
                               .outputs[features.LABEL_KEY]).reshape(-1).tolist()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(64)))
    for index, answer in enumerate(answers):
        np.testing.assert_allclose(answer, np.reshape(expected[index % 4], -1), rtol=0,
                                   atol=PREDICTION_ABS)
