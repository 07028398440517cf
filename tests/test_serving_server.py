"""The REST server as a real process: TF Serving's endpoints, validation, batching, hot reload.

Answers are compared with `serving_default` called in this process on the same rows; the
models are tiny ones trained once per session (tests/serving_fixtures.py).
"""
from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import time
from typing import Any, Callable, Dict, List

import httpx
import numpy as np
import pytest

from modules import features
from tests.tolerances import prediction_abs
from tests.serving_fixtures import (COURSE_PAYLOAD, JSON, MAX_BODY_BYTES, MAX_INSTANCES,
                                    MODEL_NAME, RunningServer, ServingModels, Traffic, close_to,
                                    in_process_predictions, statuses, wait_for)

# The same rows through the same model, in other batches (tests.tolerances.prediction_abs).
PREDICTION_ABS = prediction_abs()

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)

CANONICAL = {features.IS_MALE.name: features.IS_MALE_TRUE,
             features.PLURALITY.name: features.PLURALITY_NAMES[0],
             features.MOTHER_AGE.name: 26.0, features.GESTATION_WEEKS.name: 39.0}


@pytest.fixture(scope="module")
def client(shared_server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=shared_server.url, timeout=30) as result:
        yield result


@pytest.fixture(scope="module")
def expected(serving_models: ServingModels) -> np.ndarray:
    return in_process_predictions(serving_models.exports[1], serving_models.instances)


def _available(version: int) -> Dict[str, Any]:
    return {"version": str(version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}


def _ended(version: int) -> Dict[str, Any]:
    return {"version": str(version), "state": "END",
            "status": {"error_code": "OK", "error_message": ""}}


# ------------------------------------------------------------------------------------------------
# Status, metadata, health, docs
# ------------------------------------------------------------------------------------------------

def test_model_status_endpoints(client: httpx.Client) -> None:
    for path in (f"/v1/models/{MODEL_NAME}", f"/v1/models/{MODEL_NAME}/versions/1"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.json() == {"model_version_status": [_available(1)]}
    for path, status in ((f"/v1/models/{MODEL_NAME}/versions/7", 404),
                         (f"/v1/models/{MODEL_NAME}/versions/latest", 400),
                         ("/v1/models/other", 404),
                         (f"/v1/models/{MODEL_NAME}:predict", 405),
                         ("/v1/nothing", 404)):
        answer = client.get(path)
        assert answer.status_code == status, path
        assert set(answer.json()) == {"error"}, path


def test_metadata_has_tf_serving_shape(client: httpx.Client) -> None:
    answer = client.get(f"/v1/models/{MODEL_NAME}/metadata")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_tf_example", "transform_features"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    dtypes = {name: spec["dtype"] for name, spec in default["inputs"].items()}
    assert dtypes == {**{f.name: "DT_STRING" for f in features.CATEGORICAL_FEATURES},
                      **{f.name: "DT_FLOAT" for f in features.NUMERIC_FEATURES}}
    assert list(default["outputs"]) == [features.LABEL_KEY]
    assert default["inputs"][features.MOTHER_AGE.name]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}]
    assert client.get(f"/v1/models/{MODEL_NAME}/versions/1/metadata").json() == body
    assert client.get(f"/v1/models/{MODEL_NAME}/versions/2/metadata").status_code == 404


def test_healthz_and_openapi(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["version"] == 1
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/v1/models/{model_name}:predict"]["post"]
    assert "/v1/models/{model_name}/versions/{version}:predict" in spec["paths"]
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    row = schema["oneOf"][0]["properties"]["instances"]["items"]["properties"]
    assert row[features.MOTHER_AGE.name]["maximum"] == features.MOTHER_AGE.max_value
    assert features.PLURALITY_NAMES[1] in row[features.PLURALITY.name]["enum"]
    items = schema["oneOf"][0]["properties"]["instances"]["items"]
    columnar = schema["oneOf"][1]["properties"]["inputs"]
    required = [f.name for f in features.FEATURES if f.required]
    assert features.PLURALITY.name in required
    assert items["required"] == columnar["required"] == required
    assert client.get("/docs").status_code == 200


# ------------------------------------------------------------------------------------------------
# Predict
# ------------------------------------------------------------------------------------------------

def _predict(client: httpx.Client, body: Any, version: Any = None) -> httpx.Response:
    middle = f"/versions/{version}" if version is not None else ""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(f"/v1/models/{MODEL_NAME}{middle}:predict", content=content,
                       headers=JSON)


def test_row_format_matches_in_process(client: httpx.Client, serving_models: ServingModels,
                                       expected: np.ndarray) -> None:
    answer = _predict(client, {"instances": serving_models.instances})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert all(isinstance(p, float) for p in predictions)  # one output: plain scalars
    np.testing.assert_allclose(predictions, expected, rtol=0, atol=PREDICTION_ABS)
    versioned = _predict(client, {"instances": serving_models.instances[:3]}, version=1)
    np.testing.assert_allclose(versioned.json()["predictions"], predictions[:3], rtol=0,
                               atol=PREDICTION_ABS)
    assert _predict(client, {"instances": serving_models.instances[:3]},
                    version=2).status_code == 404


def test_columnar_format_matches_in_process(client: httpx.Client,
                                            serving_models: ServingModels,
                                            expected: np.ndarray) -> None:
    inputs = {name: [i[name] for i in serving_models.instances] for name in features.FEATURE_NAMES}
    answer = _predict(client, {"inputs": inputs, "signature_name": "serving_default"})
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json()["outputs"], expected, rtol=0, atol=PREDICTION_ABS)


def test_course_payload_and_boolean_is_male_equal_canonical(client: httpx.Client) -> None:
    canonical = _predict(client, {"instances": [CANONICAL]}).json()["predictions"]
    course = _predict(client, COURSE_PAYLOAD).json()["predictions"]
    boolean = {"instances": [{**COURSE_PAYLOAD["instances"][0], "is_male": True}]}
    assert course == canonical == _predict(client, boolean).json()["predictions"]
    girl = _predict(client, {"instances": [{**CANONICAL, "is_male": False}]}).json()
    assert girl["predictions"] == _predict(
        client, {"instances": [{**CANONICAL, "is_male": features.IS_MALE_FALSE}]}).json()[
        "predictions"]


def test_optional_features_may_be_absent(client: httpx.Client) -> None:
    optional = [f for f in features.CATEGORICAL_FEATURES if not f.required]
    explicit = {**CANONICAL, **{f.name: f.missing_value for f in optional}}
    absent = {k: v for k, v in CANONICAL.items() if k not in {f.name for f in optional}}
    answers = [_predict(client, {"instances": [body]}) for body in (explicit, absent)]
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    assert answers[0].json()["predictions"] == answers[1].json()["predictions"]


def test_missing_plurality_is_400_and_multiple_must_be_asked_for(client: httpx.Client) -> None:
    """Left out, plurality was read as 'Multiple(2+)' and predicted a twin's weight."""
    without = {k: v for k, v in CANONICAL.items() if k != features.PLURALITY.name}
    answer = _predict(client, {"instances": [without]})
    assert answer.status_code == 400, answer.text
    assert "missing required feature 'plurality'" in answer.json()["error"]
    multiple = {**without, features.PLURALITY.name: features.PLURALITY_MULTIPLE_UNKNOWN}
    assert _predict(client, {"instances": [multiple]}).status_code == 200


def test_is_male_warehouse_spellings_equal_canonical(client: httpx.Client) -> None:
    for spelling, canonical in (("true", features.IS_MALE_TRUE), ("FALSE", features.IS_MALE_FALSE)):
        words = _predict(client, {"instances": [{**CANONICAL, "is_male": spelling}]})
        same = _predict(client, {"instances": [{**CANONICAL, "is_male": canonical}]})
        assert words.status_code == 200, words.text
        assert words.json()["predictions"] == same.json()["predictions"]


def test_tf_example_signature_matches_serving_default(client: httpx.Client,
                                                      serving_models: ServingModels,
                                                      expected: np.ndarray) -> None:
    from tensorflow.core.example import example_pb2

    def encoded(instance: Dict[str, Any]) -> Dict[str, str]:
        example = example_pb2.Example()
        for feature in features.FEATURES:
            value = instance[feature.name]
            if isinstance(feature, features.CategoricalFeature):
                example.features.feature[feature.name].bytes_list.value.append(value.encode())
            else:
                example.features.feature[feature.name].int64_list.value.append(int(value))
        return {"b64": base64.b64encode(example.SerializeToString()).decode()}

    instances = serving_models.instances[:10]
    answer = _predict(client, {"signature_name": "serving_tf_example",
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
    answer = _predict(client, body)
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


def test_concurrent_requests_share_model_calls(shared_server: RunningServer,
                                               client: httpx.Client) -> None:
    """64 simultaneous single-row requests: all answered right, in fewer model calls."""
    expected = _predict(client, COURSE_PAYLOAD).json()["predictions"]
    before = client.get("/healthz").json()["batching"]

    async def burst() -> List[httpx.Response]:
        async with httpx.AsyncClient(base_url=shared_server.url, timeout=30) as session:
            return await asyncio.gather(*(
                session.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD)
                for _ in range(64)))

    answers = asyncio.run(burst())
    assert all(a.status_code == 200 for a in answers)
    # A row's answer may depend on the batch it shared.
    np.testing.assert_allclose([a.json()["predictions"] for a in answers], [expected] * 64,
                               rtol=0, atol=PREDICTION_ABS)
    after = client.get("/healthz").json()["batching"]
    assert after["rows"] - before["rows"] == 64
    assert after["model_calls"] - before["model_calls"] < 64


def test_access_log_lines(shared_server: RunningServer, client: httpx.Client) -> None:
    """One line per request (method, path, status, latency), written within a moment."""
    _predict(client, {"instances": []})

    def lines() -> List[str]:
        return [line for line in shared_server.log().splitlines()
                if f"POST /v1/models/{MODEL_NAME}:predict 400 " in line]

    wait_for(lambda: bool(lines()))
    assert lines()[-1].rstrip().endswith(" ms")


# ------------------------------------------------------------------------------------------------
# Hot reload
# ------------------------------------------------------------------------------------------------

def test_hot_reload_switches_without_failures_and_survives_a_broken_version(
        serving_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    model_dir = serving_models.serving_dir(tmp_path)
    # A half-copied push the pusher left behind: hidden, so never loaded.
    (model_dir / ".9.incomplete").mkdir()
    server = server_factory(model_dir, "--poll-seconds", "0.2", "--max-num-load-retries", "0")
    row = [COURSE_PAYLOAD["instances"][0]]
    old, new = (float(in_process_predictions(serving_models.exports[v], row)[0]) for v in (1, 2))
    assert not close_to(old, new)

    session = httpx.Client(base_url=server.url, timeout=30)
    with Traffic(server.predict_url()) as traffic:
        wait_for(lambda: len(traffic.answers) >= 20)
        serving_models.push(model_dir, 2)
        wait_for(lambda: statuses(session)[0]["version"] == "2")
        seen = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= seen + 20)
    assert traffic.failures == []
    assert all(close_to(a, old) or close_to(a, new) for a in traffic.answers)
    assert close_to(traffic.answers[0], old) and close_to(traffic.answers[-1], new)
    assert statuses(session) == [_available(2), _ended(1)]  # TF Serving lists the unloaded one
    answer = session.post(server.predict_url(2), json=COURSE_PAYLOAD).json()["predictions"]
    assert close_to(answer[0], new)
    assert session.post(server.predict_url(1), json=COURSE_PAYLOAD).status_code == 404

    # A broken version 3 with no retries allowed: logged, reported END, not tried again;
    # version 2 keeps serving.
    staging = model_dir / ".3.incomplete"
    (staging / "variables").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    staging.rename(model_dir / "3")
    with Traffic(server.predict_url()) as traffic:
        wait_for(lambda: any(s["version"] == "3" for s in statuses(session)))
        polls = session.get("/healthz").json()["polls"]
        wait_for(lambda: session.get("/healthz").json()["polls"] >= polls + 5)  # none retries 3
    seen_statuses = statuses(session)
    assert seen_statuses[0] == _available(2)
    assert seen_statuses[1]["version"] == "3" and seen_statuses[1]["state"] == "END"
    failed = seen_statuses[1]["status"]
    assert failed["error_code"] != "OK" and failed["error_message"]
    assert traffic.failures == [] and traffic.answers
    assert all(close_to(a, new) for a in traffic.answers)
    assert session.get(f"/v1/models/{MODEL_NAME}/versions/3").json()[
        "model_version_status"][0]["state"] == "END"
    assert session.post(server.predict_url(3), json=COURSE_PAYLOAD).status_code == 404
    assert session.get("/healthz").json()["version"] == 2
    assert server.log().count("Version 3 at") == 1
    session.close()


def test_healthz_is_503_until_a_version_exists(serving_models: ServingModels,
                                               tmp_path: pathlib.Path) -> None:
    """An app started on an empty directory answers 503, then serves the first push.

    In process (FastAPI's TestClient runs the app and its poller): no model to wait for.
    """
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ModelConfig

    model_dir = tmp_path / "serving" / MODEL_NAME
    model_dir.mkdir(parents=True)
    app = create_app(ModelConfig(model_dir=str(model_dir), model_name=MODEL_NAME),
                     poll_seconds=0.1, access_log=False, manage_heap=False)
    with TestClient(app) as session:
        assert session.get("/healthz").status_code == 503
        answer = session.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD)
        assert answer.status_code == 503 and "error" in answer.json()
        assert session.get(f"/v1/models/{MODEL_NAME}").status_code == 404
        serving_models.push(model_dir, 1)
        wait_for(lambda: session.get("/healthz").status_code == 200)
        assert session.post(f"/v1/models/{MODEL_NAME}:predict",
                            json=COURSE_PAYLOAD).status_code == 200


# ------------------------------------------------------------------------------------------------
# The batcher on its own (no TensorFlow): slicing, grouping by model, errors, the timeout
# ------------------------------------------------------------------------------------------------

class _FakeModel:
    """Doubles `x`; records the size of every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: List[int] = []
        self.fail = fail

    def predict(self, signature: str, columns: Dict[str, List[float]]) -> Dict[str, np.ndarray]:
        time.sleep(0.005)  # long enough for requests to queue behind a call
        self.calls.append(len(columns["x"]))
        if self.fail:
            raise ValueError("model broke")
        return {"y": np.asarray(columns["x"]) * 2}


def _submit_all(batcher: Any, requests: List[tuple]) -> List[Any]:
    async def run() -> List[Any]:
        return await asyncio.gather(
            *(batcher.predict(model, "sig", {"x": values}, len(values))
              for model, values in requests), return_exceptions=True)
    return asyncio.run(run())


def test_batcher_slices_answers_and_never_mixes_models() -> None:
    from serving.batching import Batcher

    first, second = _FakeModel(), _FakeModel()
    batcher = Batcher(max_batch_rows=16)
    requests = [(first if i % 3 else second, [float(i), float(i) + 0.5]) for i in range(30)]
    answers = _submit_all(batcher, requests)
    for (_, values), answer in zip(requests, answers):
        assert answer["y"].tolist() == [2 * v for v in values]
    assert sum(first.calls) + sum(second.calls) == 60
    assert len(first.calls) + len(second.calls) < 30  # shared calls
    assert max(first.calls + second.calls) <= 16
    assert batcher.stats()["rows"] == 60
    batcher.close()


def test_batcher_reports_model_errors_to_every_request_of_the_call() -> None:
    from serving.batching import Batcher

    batcher = Batcher()
    answers = _submit_all(batcher, [(_FakeModel(fail=True), [1.0])] * 3)
    assert all(isinstance(a, ValueError) for a in answers)
    batcher.close()


class _ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it: the batcher's timer fires
    after the arrivals the test staged, however slowly a loaded machine runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


def test_batcher_timeout_gathers_requests_into_one_call() -> None:
    from serving.batching import Batcher

    model = _FakeModel()
    batcher = Batcher(timeout_s=0.05)
    loop = _ManualClockLoop()

    async def staggered() -> None:
        requests = []
        for value in range(4):  # one arrival every 5 ms of the loop's clock
            requests.append(asyncio.ensure_future(
                batcher.predict(model, "sig", {"x": [float(value)]}, 1)))
            await asyncio.sleep(0)  # the request is queued
            loop.now += 0.005
        assert model.calls == [], "the forming batch was not held open"
        loop.now += 0.05  # past the first arrival's timeout
        await asyncio.gather(*requests)

    try:
        loop.run_until_complete(staggered())
    finally:
        loop.close()
        batcher.close()
    assert model.calls == [4]
    batcher.close()
