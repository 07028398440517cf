"""The server's request log: every sampled row with the prediction the client got, written
off the request path, for REST and gRPC alike; a log that cannot write never fails a request and
counts its drops."""
from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any, Dict, Iterator, List

import grpc
import httpx
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from modules import features
from monitoring import logs
from serving import request_log
from tests.serving_fixtures import ServingModels, start_server, stop_server
from tests.test_serving_grpc import _columns, predict_request

pytest_plugins = ("tests.serving_fixtures",)


def _predict(server: Any, instances) -> httpx.Response:
    answer = httpx.post(server.predict_url(), json={"instances": instances}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


@dataclasses.dataclass(frozen=True)
class Logged:
    answered: List[float]  # what REST answered for instances[:30], in three requests
    rows: List[Dict[str, Any]]  # sent again after those, once over REST and once over gRPC
    grpc_answers: int  # how many predictions the gRPC answer held
    health: Dict[str, Any]  # /healthz's request_log, before the server stopped
    log_dir: pathlib.Path


@pytest.fixture(scope="module")
def logged(stand_in_models: ServingModels,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """One server that logs every row it answers: 30 rows over REST, then 6 of them over REST
    and over gRPC (the stock stub); stopped (SIGTERM: the log completes its open file on the
    way out), its log then only read."""
    root = tmp_path_factory.mktemp("logging_server")
    log_dir = root / "log"
    server = start_server(stand_in_models.serving_dir(root), root / "server.log",
                          "--request-log-dir", str(log_dir), "--request-log-sample-rate", "1")
    try:
        answered = []
        for start in range(0, 30, 10):
            answer = _predict(server, stand_in_models.instances[start:start + 10])
            answered += [p[0] if isinstance(p, list) else p for p in answer.json()["predictions"]]
        rows = stand_in_models.instances[:6]
        _predict(server, rows)
        with grpc.insecure_channel(server.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answer = stub.Predict(predict_request(_columns(rows)), timeout=60)
        grpc_answers = len(tf.make_ndarray(answer.outputs["weight_pounds"]).reshape(-1))
        health = httpx.get(f"{server.url}/healthz", timeout=10).json()["request_log"]
    finally:
        stop_server(server)
    yield Logged(answered, rows, grpc_answers, health, log_dir)


def test_the_server_logs_each_row_with_its_answer(logged: Logged) -> None:
    assert logged.health["dropped"] == 0 and logged.health["sample_rate"] == 1.0
    table = logs.read(request_log.complete_files(logged.log_dir))
    assert len(table) == len(logged.answered) + 2 * len(logged.rows)
    # Oldest first: the 30 rows' records come before the rows sent twice.
    first = table[request_log.PREDICTION_KEY].to_numpy()[:len(logged.answered)]
    np.testing.assert_allclose(np.sort(first), np.sort(np.asarray(logged.answered, np.float32)),
                               rtol=1e-6)
    assert set(table[request_log.VERSION_KEY]) == {1}


def test_an_unwritable_log_directory_never_fails_a_request(stand_in_models: ServingModels,
                                                           server_factory: Any,
                                                           tmp_path: pathlib.Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    server = server_factory(stand_in_models.serving_dir(tmp_path), "--request-log-dir",
                            str(blocker / "log"), "--request-log-sample-rate", "1")
    for _ in range(3):
        _predict(server, stand_in_models.instances[:4])
    dropped, deadline = 0, time.monotonic() + 120  # the writer drops after the request returns
    while dropped < 12 and time.monotonic() < deadline:
        dropped = httpx.get(f"{server.url}/healthz", timeout=10).json()["request_log"]["dropped"]
        time.sleep(0.1)
    assert dropped == 12
    assert server.log().count("cannot write") == 1
    scraped = httpx.get(f"{server.url}/monitoring/prometheus/metrics", timeout=10).text
    assert 'babyweight_serving_request_log_records_total{outcome="dropped"} 12.0' in scraped
    assert 'babyweight_serving_request_log_records_total{outcome="written"} 0.0' in scraped


def _records(directory: pathlib.Path) -> list:
    """Each logged record as a tf.Example without its time (the only field that differs)."""
    found = []
    for path in request_log.complete_files(directory):
        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            del example.features.feature[request_log.TIME_KEY]
            found.append(example.SerializeToString(deterministic=True))
    return found


def test_grpc_requests_are_logged_as_rest_ones_are(logged: Logged) -> None:
    """The same rows sent over REST and over gRPC (the stock stub) give the same records."""
    assert logged.grpc_answers == len(logged.rows)
    records = _records(logged.log_dir)
    assert len(records) == len(logged.answered) + 2 * len(logged.rows)
    sent = len(logged.rows)
    assert sorted(records[-2 * sent:-sent]) == sorted(records[-sent:])  # REST's, then gRPC's


def test_tf_example_requests_are_logged_as_feature_ones_are(serving_models: ServingModels,
                                                           tmp_path: pathlib.Path) -> None:
    """The same rows as features (:predict) and as tf.Examples (:regress on the regression
    signature, :predict on serving_tf_example): the same records, answers included, so the
    monitor sees traffic of every signature that predicts the weight."""
    import base64

    from tests.serving_fixtures import instance_example

    log_dir = tmp_path / "log"
    server = start_server(serving_models.serving_dir(tmp_path), tmp_path / "server.log",
                          "--request-log-dir", str(log_dir), "--request-log-sample-rate", "1")
    rows = serving_models.instances[:5]
    try:
        predicted = _predict(server, rows).json()["predictions"]
        regress = httpx.post(server.predict_url().replace(":predict", ":regress"), timeout=60,
                             json={"signature_name": "regression", "examples": rows})
        assert regress.status_code == 200, regress.text
        examples = [{"b64": base64.b64encode(instance_example(row).SerializeToString()).decode()}
                    for row in rows]
        answer = httpx.post(server.predict_url(), timeout=60, json={
            "signature_name": "serving_tf_example", "instances": examples})
        assert answer.status_code == 200, answer.text
    finally:
        stop_server(server)
    assert len(regress.json()["result"]) == len(answer.json()["predictions"]) == len(predicted)
    table = logs.read(request_log.complete_files(log_dir))
    sent = len(rows)
    assert len(table) == 3 * sent
    # In the order sent: the features' records, the regression's, serving_tf_example's.
    parts = [table.iloc[i * sent:(i + 1) * sent].reset_index(drop=True) for i in range(3)]
    for part in parts[1:]:
        for name in (*features.FEATURE_NAMES, request_log.VERSION_KEY):
            assert part[name].tolist() == parts[0][name].tolist(), name
        # The same graph behind each signature; float32 answers, so float32's resolution.
        np.testing.assert_allclose(part[request_log.PREDICTION_KEY],
                                   parts[0][request_log.PREDICTION_KEY], rtol=1e-6)
    np.testing.assert_allclose(parts[0][request_log.PREDICTION_KEY],
                               np.asarray(predicted, np.float32).reshape(-1), rtol=1e-6)
