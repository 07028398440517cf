"""REST :predict on the real server: both formats equal serving_default in process, bad bodies.

Answers are compared with `serving_default` called in this process on the same rows; the
models are tiny ones trained once per session (tests/serving_fixtures.py).
"""
from __future__ import annotations

import base64
import http.client
import json
import socket
from typing import Any, Dict, List, Tuple

import httpx
import numpy as np
import pytest

from modules import features
from tests.tolerances import prediction_abs
from tests.serving_fixtures import (COURSE_PAYLOAD, MAX_BODY_BYTES, MAX_INSTANCES, MODEL_NAME,
                                    RunningServer, ServingModels, in_process_predictions,
                                    instance_example, post_predict)

# The same rows through the same model, in other batches (tests.tolerances.prediction_abs).
PREDICTION_ABS = prediction_abs()

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)

CANONICAL = {features.IS_MALE.name: features.IS_MALE_TRUE,
             features.PLURALITY.name: features.PLURALITY_NAMES[0],
             features.MOTHER_AGE.name: 26.0, features.GESTATION_WEEKS.name: 39.0}


@pytest.fixture(scope="module")
def expected(serving_models: ServingModels) -> np.ndarray:
    return in_process_predictions(serving_models.exports[1], serving_models.instances)


def test_row_format_matches_in_process(client: httpx.Client, serving_models: ServingModels,
                                       expected: np.ndarray) -> None:
    answer = post_predict(client, {"instances": serving_models.instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert all(isinstance(p, float) for p in predictions)  # one output: plain scalars
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=PREDICTION_ABS)
    versioned = post_predict(client, {"instances": serving_models.instances[:3]}, version=1)
    np.testing.assert_allclose(versioned.json()["predictions"], predictions[:3], rtol=0,
                               atol=PREDICTION_ABS)
    assert post_predict(client, {"instances": serving_models.instances[:3]},
                    version=2).status_code == 404


def test_columnar_format_matches_in_process(client: httpx.Client,
                                            serving_models: ServingModels,
                                            expected: np.ndarray) -> None:
    inputs = {name: [i[name] for i in serving_models.instances] for name in features.FEATURE_NAMES}
    answer = post_predict(client, {"inputs": inputs, "signature_name": "serving_default"})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=0, atol=PREDICTION_ABS)


def test_course_payload_and_boolean_is_male_equal_canonical(client: httpx.Client) -> None:
    canonical = post_predict(client, {"instances": [CANONICAL]}).json()["predictions"]
    course = post_predict(client, COURSE_PAYLOAD).json()["predictions"]
    boolean = {"instances": [{**COURSE_PAYLOAD["instances"][0], "is_male": True}]}
    assert course == canonical == post_predict(client, boolean).json()["predictions"]
    girl = post_predict(client, {"instances": [{**CANONICAL, "is_male": False}]}).json()
    assert girl["predictions"] == post_predict(
        client, {"instances": [{**CANONICAL, "is_male": features.IS_MALE_FALSE}]}).json()[
        "predictions"]


def test_optional_features_may_be_absent(client: httpx.Client) -> None:
    optional = [f for f in features.CATEGORICAL_FEATURES if not f.required]
    explicit = {**CANONICAL, **{f.name: f.missing_value for f in optional}}
    absent = {k: v for k, v in CANONICAL.items() if k not in {f.name for f in optional}}
    answers = [post_predict(client, {"instances": [body]}) for body in (explicit, absent)]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[0].json()["predictions"] == answers[1].json()["predictions"]


def test_missing_plurality_is_400_and_multiple_must_be_asked_for(client: httpx.Client) -> None:
    """Left out, plurality was read as 'Multiple(2+)' and predicted a twin's weight."""
    without = {k: v for k, v in CANONICAL.items() if k != features.PLURALITY.name}
    answer = post_predict(client, {"instances": [without]})
    assert answer.status_code == 400, answer.text
    assert "missing required feature 'plurality'" in answer.json()["error"]
    multiple = {**without, features.PLURALITY.name: features.PLURALITY_MULTIPLE_UNKNOWN}
    assert post_predict(client, {"instances": [multiple]}).status_code == 200


def test_is_male_warehouse_spellings_equal_canonical(client: httpx.Client) -> None:
    for spelling, canonical in (("true", features.IS_MALE_TRUE), ("FALSE", features.IS_MALE_FALSE)):
        words = post_predict(client, {"instances": [{**CANONICAL, "is_male": spelling}]})
        same = post_predict(client, {"instances": [{**CANONICAL, "is_male": canonical}]})
        assert words.status_code == 200, words.text
        assert words.json()["predictions"] == same.json()["predictions"]


def test_tf_example_signature_matches_serving_default(client: httpx.Client,
                                                      serving_models: ServingModels,
                                                      expected: np.ndarray) -> None:
    def encoded(instance: Dict[str, Any]) -> Dict[str, str]:
        example = instance_example(instance)
        return {"b64": base64.b64encode(example.SerializeToString()).decode()}

    instances = serving_models.instances[:10]
    answer = post_predict(client, {"signature_name": "serving_tf_example",
                               "instances": [encoded(i) for i in instances]})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["predictions"], expected[:10], rtol=0,
                               atol=PREDICTION_ABS)


def _example_bytes(**values: int) -> bytes:
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, value in values.items():
        example.features.feature[name].int64_list.value.append(value)
    return example.SerializeToString()


def _with(**changes: Any) -> Dict[str, Any]:
    instance = {**CANONICAL, **changes}
    return {"instances": [CANONICAL, {k: v for k, v in instance.items() if v is not ...}]}


AGE, WEEKS = features.MOTHER_AGE, features.GESTATION_WEEKS
BAD_REQUESTS: List[tuple] = [
    ("missing required", _with(mother_age=...), ["instances[1]", "mother_age", "missing"]),
    ("wrong type", _with(mother_age="26"), ["instances[1].mother_age", "expected a number"]),
    ("wrong type string", _with(plurality=2), ["instances[1].plurality", "expected a string"]),
    ("out of vocabulary", _with(plurality="Twins"), ["instances[1].plurality", "vocabulary"]),
    ("not a bool string", _with(is_male="yes"), ["instances[1].is_male", "vocabulary"]),
    ("missing plurality", _with(plurality=...), ["instances[1]", "plurality", "missing"]),
    ("null plurality", _with(plurality=None), ["instances[1].plurality", "required"]),
    ("columnar missing plurality",
     {"inputs": {k: [v] for k, v in CANONICAL.items() if k != features.PLURALITY.name}},
     ["inputs", "missing required feature 'plurality'"]),
    ("tf.Example missing plurality", {"signature_name": "serving_tf_example", "instances": [
        {"b64": base64.b64encode(_example_bytes(mother_age=26, gestation_weeks=39)).decode()}]},
     ["instances[0]", "missing required feature 'plurality'"]),
    ("above range", _with(mother_age=AGE.max_value + 1), ["instances[1].mother_age", "range"]),
    ("below range", _with(gestation_weeks=WEEKS.min_value - 1),
     ["instances[1].gestation_weeks", "range"]),
    ("NaN", json.dumps(_with(mother_age=float("nan"))).encode(),
     ["instances[1].mother_age", "finite"]),
    ("Infinity", json.dumps(_with(gestation_weeks=float("inf"))).encode(),
     ["instances[1].gestation_weeks", "finite"]),
    ("unknown feature", _with(mother_agee=26), ["instances[1]", "unknown feature 'mother_agee'"]),
    ("empty batch", {"instances": []}, ["instances", "empty"]),
    ("oversized batch", {"instances": [CANONICAL] * (MAX_INSTANCES + 1)},
     ["instances", f"limit of {MAX_INSTANCES}"]),
    ("body too large", b'{"instances": [' + b" " * MAX_BODY_BYTES + b"]}",
     ["over the limit", str(MAX_BODY_BYTES)]),
    ("malformed JSON", b'{"instances": [{"mother_age": 26', ["malformed JSON"]),
    ("nested too deeply", b'{"instances": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
     ["malformed JSON"]),
    ("not UTF-8", b'{"instances": ["\xff"]}', ["malformed JSON"]),
    ("not an object", b"[1, 2, 3]", ["JSON object"]),
    ("a key twice", b'{"instances": [{"is_male": "True", "plurality": "Single(1)", '
     b'"mother_age": 26, "gestation_weeks": 39, "mother_age": 40}]}',
     ["malformed JSON", "'mother_age' appears twice"]),
    ("both formats", {"instances": [CANONICAL], "inputs": {}}, ["exactly one of"]),
    ("unknown signature", {"instances": [CANONICAL], "signature_name": "nope"},
     ['"nope" not found']),
    ("columnar lengths", {"inputs": {"mother_age": [26, 27], "gestation_weeks": [39]}},
     ["inputs.gestation_weeks", "has 1 values"]),
    ("instance not object", {"instances": [[26, 39]]}, ["instances[0]", "expected an object"]),
    ("bad b64 example", {"signature_name": "serving_tf_example", "instances": [{"b64": "%%"}]},
     ["instances[0]", "base64"]),
]


@pytest.mark.parametrize("body,words", [(b, w) for _, b, w in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
def test_bad_requests_get_400_naming_the_field(client: httpx.Client, body: Any,
                                               words: List[str]) -> None:
    answer = post_predict(client, body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()
    assert set(error) == {"error"}
    for word in words:
        assert word in error["error"], error["error"]


def test_unknown_model_is_404(client: httpx.Client) -> None:
    answer = client.post("/v1/models/other:predict", json=COURSE_PAYLOAD)
    assert answer.status_code == 404
    assert answer.json() == {"error": "Servable not found for request: Latest(other)"}


def _burst(url: str, count: int) -> List[Tuple[int, Any]]:
    """`count` single-row predicts that reach the server together: every connection is open
    before the first request is sent, then the requests go out back to back. (Sent by an
    asyncio client as it connects, they can arrive one after another on a loaded machine, each
    answered before the next, which is no test of batching.)"""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    body = json.dumps(COURSE_PAYLOAD).encode()
    request = (f"POST /v1/models/{MODEL_NAME}:predict HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    connections = [socket.create_connection((host, int(port)), timeout=30) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(request)
        answers = []
        for connection in connections:
            response = http.client.HTTPResponse(connection)
            response.begin()
            answers.append((response.status, json.loads(response.read())))
        return answers
    finally:
        for connection in connections:
            connection.close()


def test_concurrent_requests_share_model_calls(shared_server: RunningServer,
                                               client: httpx.Client) -> None:
    """64 simultaneous single-row requests: all answered right, in fewer model calls."""
    expected = post_predict(client, COURSE_PAYLOAD).json()["predictions"]
    before = client.get("/healthz").json()["batching"]
    answers = _burst(shared_server.url, 64)
    assert all(status == 200 for status, _ in answers), answers
    # A row's answer may depend on the batch it shared.
    np.testing.assert_allclose([answer["predictions"] for _, answer in answers],
                               [expected] * 64, rtol=0, atol=PREDICTION_ABS)
    after = client.get("/healthz").json()["batching"]
    assert after["rows"] - before["rows"] == 64
    assert after["model_calls"] - before["model_calls"] < 64
