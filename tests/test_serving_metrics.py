"""Prometheus metrics at TF Serving's path: every request counted by API, protocol and status."""
from __future__ import annotations

from typing import Dict, Iterator, Tuple

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import metrics
from tests.serving_fixtures import COURSE_PAYLOAD, JSON, MODEL_NAME, RunningServer
from tests.test_serving_grpc import COURSE_INSTANCES, _columns, predict_request

pytest_plugins = ("tests.serving_fixtures",)
Samples = Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]


@pytest.fixture(scope="module")
def client(shared_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=30) as result:
        yield result


def _scrape(client: httpx.Client) -> Samples:
    answer = client.get(metrics.PATH)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def _requests(samples: Samples, **labels: str) -> float:
    wanted = {"model": MODEL_NAME, **labels}
    return sum(v for (name, key), v in samples.items()
               if name == "babyweight_serving_requests_total"
               and wanted.items() <= dict(key).items())


def test_requests_of_both_protocols_are_counted(shared_server: RunningServer,
                                                client: httpx.Client) -> None:
    before = _scrape(client)
    assert client.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD,
                       headers=JSON).status_code == 200
    assert client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": []},
                       headers=JSON).status_code == 400
    assert client.get(f"/v1/models/{MODEL_NAME}").status_code == 200
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request(_columns(COURSE_INSTANCES)), timeout=60)
        with pytest.raises(grpc.RpcError):
            stub.Predict(predict_request({"mother_age": [1e9]}), timeout=60)
    after = _scrape(client)
    for labels, count in ((dict(api="predict", protocol="rest", status="200", version="1"), 1),
                          (dict(api="predict", protocol="rest", status="400"), 1),
                          (dict(api="status", protocol="rest", status="200"), 1),
                          (dict(api="predict", protocol="grpc", status="OK", version="1"), 1),
                          (dict(api="predict", protocol="grpc", status="INVALID_ARGUMENT"), 1)):
        assert _requests(after, **labels) - _requests(before, **labels) == count, labels
    latency = [v for (name, key), v in after.items()
               if name == "babyweight_serving_request_latency_seconds_count"
               and ("protocol", "grpc") in key]
    assert sum(latency) >= 2


def test_versions_loads_and_batches_are_reported(client: httpx.Client) -> None:
    assert client.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD,
                       headers=JSON).status_code == 200
    samples = _scrape(client)
    versions = {dict(key)["version"]: dict(key)["state"] for (name, key), v in samples.items()
                if name == "babyweight_serving_model_versions" and v == 1}
    assert versions == {"1": "AVAILABLE"}
    assert samples[("babyweight_serving_model_load_seconds_count",
                    (("model", MODEL_NAME),))] >= 1
    assert samples[("babyweight_serving_batch_rows_count", (("model", MODEL_NAME),))] >= 1


def test_rest_api_names() -> None:
    assert metrics.rest_api("POST", "/v1/models/m:predict") == "predict"
    assert metrics.rest_api("POST", "/v1/models/m/versions/3:regress") == "regress"
    assert metrics.rest_api("GET", "/v1/models/m/versions/3/metadata") == "metadata"
    assert metrics.rest_api("GET", "/v1/models/m/versions/3") == "status"
    assert metrics.rest_api("GET", "/healthz") is None


def test_tf_servings_own_metric_names_are_exported(shared_server: RunningServer,
                                                   client: httpx.Client) -> None:
    """A dashboard built for TF Serving finds its series: the request count by model and status
    code (no `_total`), the latency histogram in microseconds by model, API and entrypoint."""
    def tf_samples() -> Samples:
        return {key: value for key, value in _scrape(client).items()
                if key[0].startswith(":tensorflow:serving:")}

    before = tf_samples()
    assert client.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD,
                       headers=JSON).status_code == 200
    assert client.post(f"/v1/models/{MODEL_NAME}:predict", json={"instances": []},
                       headers=JSON).status_code == 400
    with grpc.insecure_channel(shared_server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.Predict(predict_request(_columns(COURSE_INSTANCES)), timeout=60)
    after = tf_samples()

    def change(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    count = metrics.TF_REQUEST_COUNT
    assert change(count, model_name=MODEL_NAME, status="OK") == 2
    assert change(count, model_name=MODEL_NAME, status="INVALID_ARGUMENT") == 1
    for entrypoint in ("REST", "GRPC"):
        assert change(metrics.TF_REQUEST_LATENCY + "_count", model_name=MODEL_NAME,
                      API="Predict", entrypoint=entrypoint) == 1
    text = client.get(metrics.PATH).text
    assert f"# TYPE {count} " in text and f"{count}_total" not in text


def test_counts_from_many_threads_are_exact() -> None:
    """gRPC's handler threads and REST's loop update the same series: none is lost."""
    import threading

    from serving import metrics as metrics_module
    from serving.metrics import Metrics

    metrics = Metrics("babyweight", lambda: [])
    go = threading.Barrier(8)

    def answer() -> None:
        go.wait()
        for _ in range(2000):
            metrics.observe("predict", "grpc", "OK", "1", 0.001)

    threads = [threading.Thread(target=answer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.exposition().decode())
               for s in family.samples}
    labels = (("api", "predict"), ("model", "babyweight"), ("protocol", "grpc"))
    assert samples[("babyweight_serving_requests_total",
                    (*labels, ("status", "OK"), ("version", "1")))] == 16000
    assert samples[("babyweight_serving_request_latency_seconds_count", labels)] == 16000

    def bucket(bound: str) -> float:
        return samples[("babyweight_serving_request_latency_seconds_bucket",
                        (labels[0], ("le", bound), *labels[1:]))]

    assert (bucket("0.0005"), bucket("0.001")) == (0, 16000)  # a bound counts what equals it
    tf_labels = (("API", "Predict"), ("entrypoint", "GRPC"), ("model_name", "babyweight"))
    assert samples[(metrics_module.TF_REQUEST_COUNT,
                    (("model_name", "babyweight"), ("status", "OK")))] == 16000
    assert samples[(metrics_module.TF_REQUEST_LATENCY + "_count", tf_labels)] == 16000
    # whole microseconds: the sum is exact
    assert samples[(metrics_module.TF_REQUEST_LATENCY + "_sum", tf_labels)] == 16000 * 1000.0


def test_batch_rows_are_written_as_prometheus_clients_histogram_writes_them() -> None:
    """The batch-rows histogram (serving/request_metrics.py's BatchRows) against
    prometheus-client's Histogram fed the same rows: the same exposition, sample for sample
    (a bound counts what equals it; rows past the last bound go to +Inf)."""
    import re

    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from serving.metrics import Metrics

    counted = Metrics("babyweight", lambda: [])
    theirs = CollectorRegistry()
    reference = Histogram("babyweight_serving_batch_rows",
                          "Rows in one model call (server-side batching)", ["model"],
                          buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384),
                          registry=theirs).labels("babyweight")

    def family(registry: CollectorRegistry) -> str:
        text = generate_latest(registry).decode()
        lines = [line for line in text.splitlines() if "babyweight_serving_batch_rows" in line]
        return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 (time)", "\n".join(lines))

    assert family(counted.registry) == family(theirs)
    for rows in (1, 0, 2, 3, 13, 32, 33, 16384, 16385, 10 ** 6):
        counted.observe_batch(rows)
        reference.observe(rows)
        assert family(counted.registry) == family(theirs)


class _StatusSent(Exception):
    pass


def test_a_grpc_error_is_counted_before_its_status_is_sent() -> None:
    """The count is scraped over REST on another thread: counted only after the status left, a
    scrape made right after the client's error could miss it."""
    import asyncio

    from serving import grpc_server, validation

    counted = metrics.Metrics(MODEL_NAME, lambda: [])

    class Context:
        async def abort(self, code: grpc.StatusCode, message: str) -> None:
            seen = {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in counted.registry.collect() for s in family.samples}
            assert code == grpc.StatusCode.INVALID_ARGUMENT and message == "bad"
            assert _requests(seen, api="predict", protocol="grpc",
                             status="INVALID_ARGUMENT") == 1
            raise _StatusSent

    async def refuse() -> None:
        raise validation.RequestError("bad")

    with pytest.raises(_StatusSent):
        asyncio.run(grpc_server._guarded(Context(), refuse, "predict", counted, None))
