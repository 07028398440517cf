"""Prometheus metrics at TF Serving's path, /monitoring/prometheus/metrics.

What a team watching TF Serving looks at: requests by model, version, API, protocol and status;
their latency; how many rows each model call carried (batching at work); how long versions
took to load, how many loads failed; which versions are in which state now; and, with
--monitoring-dir, the monitor's newest distances (serving/monitoring_gauges.py). TF Serving's
own request count and latency are exported too, under its names. Each app has
its own registry, so several apps in one process (tests) never share counts.
"""
from __future__ import annotations

import bisect
import itertools
import math
import re
import threading
import time
from typing import (Any, Awaitable, Callable, Dict, Iterator, List, MutableMapping, Optional,
                    Tuple)

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 60, 120, 300)
# TF Serving's own request metrics, under the names its Prometheus endpoint gives them, so a
# dashboard built for TF Serving reads this server too (tensorflow_serving/servables/tensorflow/
# util.cc): the count by model and status code of Predict/Classify/Regress, and the latency in
# microseconds of the successful ones by model, API and entrypoint, on TF Serving's buckets.
TF_REQUEST_COUNT = ":tensorflow:serving:request_count"
TF_REQUEST_LATENCY = ":tensorflow:serving:request_latency"
_TF_APIS = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}
_TF_LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33))
_REST_API = re.compile(
    r"/v1/models/[^/]+?(?:/(?:versions|labels)/[^/:]+)?(?::(\w+)|/(metadata))?")


class _Versions:
    """A collector read at scrape time: one series per version and state (value 1)."""

    def __init__(self, model: str, statuses: Callable[[], List[Any]]) -> None:
        self._model = model
        self._statuses = statuses

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("babyweight_serving_model_versions",
                                   "Versions by state (1 per version, TF Serving's states)",
                                   labels=["model", "version", "state"])
        for status in self._statuses():
            family.add_metric([self._model, str(status.version), status.state], 1)
        yield family


class _TFServing:
    """TF Serving's request count and latency, as its exposition writes them.

    A collector of its own, because prometheus-client's Counter would name the count
    `..._total`; plain dicts and lists under one lock, as REST's event loop and the gRPC
    handler threads both update them.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.counts: Dict[str, int] = {}
        # (API, entrypoint) -> [count per bucket (the last is +Inf), sum]
        self.latency: Dict[Tuple[str, str], List[Any]] = {}
        self._lock = threading.Lock()

    def add(self, code: str) -> None:
        with self._lock:
            self.counts[code] = self.counts.get(code, 0) + 1

    def time(self, series: List[Any], micros: float) -> None:
        index = bisect.bisect_left(_TF_LATENCY_BUCKETS, micros)
        with self._lock:
            series[0][index] += 1
            series[1] += micros

    def latency_series(self, api: str, entrypoint: str) -> List[Any]:
        return self.latency.setdefault((api, entrypoint),
                                       [[0] * (len(_TF_LATENCY_BUCKETS) + 1), 0.0])

    def collect(self) -> Iterator[Metric]:
        count = Metric(TF_REQUEST_COUNT, "The total number of requests.", "unknown")
        with self._lock:  # a consistent copy: no request's update is half in it
            counts = dict(self.counts)
            latencies = [(key, (list(buckets), total))
                         for key, (buckets, total) in self.latency.items()]
        for code, value in counts.items():
            count.add_sample(TF_REQUEST_COUNT, {"model_name": self.model, "status": code}, value)
        yield count
        latency = Metric(TF_REQUEST_LATENCY, "Distribution of wall time (in microseconds) for "
                         "Tensorflow Serving request.", "histogram")
        for (api, entrypoint), (buckets, total) in latencies:
            labels = {"model_name": self.model, "API": api, "entrypoint": entrypoint}
            for bound, seen in zip((*_TF_LATENCY_BUCKETS, math.inf),
                                   itertools.accumulate(buckets)):
                latency.add_sample(TF_REQUEST_LATENCY + "_bucket",
                                   {**labels, "le": floatToGoString(bound)}, seen)
            latency.add_sample(TF_REQUEST_LATENCY + "_count", labels, sum(buckets))
            latency.add_sample(TF_REQUEST_LATENCY + "_sum", labels, total)
        yield latency


class _Collector:
    """A prometheus-client collector around a function."""

    def __init__(self, collect: Callable[[], Iterator[Metric]]) -> None:
        self.collect = collect


class Metrics:
    """The server's metrics, in one registry."""

    def __init__(self, model: str, statuses: Callable[[], List[Any]],
                 monitoring_dir: Optional[str] = None) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "babyweight_serving_requests", "Requests answered, by API, protocol and status",
            ["model", "version", "api", "protocol", "status"], registry=self.registry)
        self.latency = Histogram(
            "babyweight_serving_request_latency_seconds", "Wall time of a request",
            ["model", "api", "protocol"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.batch_rows = Histogram(
            "babyweight_serving_batch_rows", "Rows in one model call (server-side batching)",
            ["model"], buckets=_ROW_BUCKETS, registry=self.registry)
        self.load_seconds = Histogram(
            "babyweight_serving_model_load_seconds", "Time to load and warm up a version",
            ["model"], buckets=_LOAD_BUCKETS, registry=self.registry)
        self.load_failures = Counter(
            "babyweight_serving_model_load_failures", "Tries to load a version that failed",
            ["model"], registry=self.registry)
        self.registry.register(_Versions(model, statuses))
        self._series: Dict[Tuple[str, str, str, str], Tuple] = {}
        self.tf_serving = _TFServing(model)
        self.registry.register(self.tf_serving)
        if monitoring_dir:  # the monitor's distances, read at scrape time
            from serving.monitoring_gauges import MonitoringGauges

            self.registry.register(MonitoringGauges(monitoring_dir))

    def observe(self, api: str, protocol: str, status: str, version: str,
                seconds: float) -> None:
        """Counts and times one answered request (on the request path: one dict lookup and
        the series' own updates; the labelled series are looked up once per label set)."""
        key = (api, protocol, status, version)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._new_series(*key)
        count, latency, tf_code, tf_latency = series
        count.inc()
        latency.observe(seconds)
        if tf_code is not None:
            self.tf_serving.add(tf_code)
            if tf_latency is not None:
                self.tf_serving.time(tf_latency, seconds * 1e6)

    def _new_series(self, api: str, protocol: str, status: str, version: str) -> Tuple:
        tf_api, tf_code, tf_latency = _TF_APIS.get(api), None, None
        if tf_api is not None:
            tf_code = status if protocol == "grpc" else _rest_code(status)
            if tf_code == "OK":  # TF Serving times the successful requests only
                tf_latency = self.tf_serving.latency_series(tf_api, protocol.upper())
        return (self.requests.labels(self.model, version, api, protocol, status),
                self.latency.labels(self.model, api, protocol), tf_code, tf_latency)

    def watch_request_log(self, status: Callable[[], Dict[str, Any]]) -> None:
        """The request log's written and dropped records, read at scrape time."""
        def collect() -> Iterator[Metric]:
            found = status()
            family = CounterMetricFamily(
                "babyweight_serving_request_log_records", "Sampled rows the request log wrote "
                "or dropped (a full queue or disk, an unwritable directory)", labels=["outcome"])
            for outcome in ("written", "dropped"):
                family.add_metric([outcome], found[outcome])
            yield family

        self.registry.register(_Collector(collect))

    def observe_batch(self, rows: int) -> None:
        self.batch_rows.labels(self.model).observe(rows)

    def timed_load(self, load: Callable[..., Any]) -> Callable[..., Any]:
        """`load` (ModelStore's loader) timed on success, counted on failure."""
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = load(*args, **kwargs)
            except BaseException:
                self.load_failures.labels(self.model).inc()
                raise
            self.load_seconds.labels(self.model).observe(time.perf_counter() - started)
            return result
        return timed

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _rest_code(status: str) -> str:
    """A REST answer's HTTP status as the status code TF Serving counts it under."""
    if status == "200":
        return "OK"
    from serving.service import GRPC_CODES

    return GRPC_CODES.get(int(status), "UNKNOWN")


def rest_api(method: str, path: str) -> Optional[str]:
    """The TF Serving API a REST path calls (predict, regress, metadata, status...), or None."""
    match = _REST_API.fullmatch(path)
    if match is None:
        return None
    return match.group(1) or match.group(2) or ("status" if method == "GET" else "other")


class Middleware:
    """Pure ASGI middleware counting and timing every /v1/ request (fast path included)."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Metrics,
                 version_header: str) -> None:
        self.app = app
        self.metrics = metrics
        self._header = version_header.lower().encode()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        api = rest_api(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if api is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status, version = "500", ""

        async def send_and_note(message: MutableMapping[str, Any]) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = str(message["status"])
                for key, value in message.get("headers", ()):
                    if key == self._header:
                        version = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(api, "rest", status, version, time.perf_counter() - started)
