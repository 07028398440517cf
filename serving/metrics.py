"""Prometheus metrics at TF Serving's path, /monitoring/prometheus/metrics.

What a team watching TF Serving looks at: requests by model, version, API, protocol and status;
their latency; how many rows each model call carried (batching at work); how long versions
took to load, how many loads failed; which versions are in which state now; and, with
--monitoring-dir, the monitor's newest distances (serving/monitoring_gauges.py). TF Serving's
own request count and latency are exported too, under its names. Each app has
its own registry, so several apps in one process (tests) never share counts.
"""
from __future__ import annotations

import re
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from serving.request_metrics import (TF_REQUEST_COUNT, TF_REQUEST_LATENCY,  # noqa: F401
                                     BatchRows, RequestMetrics)

PATH = "/monitoring/prometheus/metrics"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)
_LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 60, 120, 300)
_KNOWN_PATHS = 4096
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
        # The request series first (serving/request_metrics.py); TF Serving's come last.
        self.requests = RequestMetrics(model, _rest_code)
        self.registry.register(self.requests)
        self.batch_rows = BatchRows(  # once per model call: see its docstring
            "babyweight_serving_batch_rows", "Rows in one model call (server-side batching)",
            model, _ROW_BUCKETS)
        self.registry.register(self.batch_rows)
        self.load_seconds = Histogram(
            "babyweight_serving_model_load_seconds", "Time to load and warm up a version",
            ["model"], buckets=_LOAD_BUCKETS, registry=self.registry)
        self.load_failures = Counter(
            "babyweight_serving_model_load_failures", "Tries to load a version that failed",
            ["model"], registry=self.registry)
        self._apis: Dict[Tuple[str, str], Optional[str]] = {}  # (method, path) -> rest_api
        self.registry.register(_Versions(model, statuses))
        self.registry.register(_Collector(self.requests.tf_serving))
        if monitoring_dir:  # the monitor's distances, read at scrape time
            from serving.monitoring_gauges import MonitoringGauges

            self.registry.register(MonitoringGauges(monitoring_dir))

    def observe(self, api: str, protocol: str, status: str, version: str,
                seconds: float) -> None:
        """Counts and times one answered request (REST's event loop, gRPC's threads)."""
        self.requests.observe(api, protocol, status, version, seconds)

    def api_of(self, method: str, path: str) -> Optional[str]:
        """rest_api, remembered for the paths seen first (a client cannot grow it unbounded)."""
        key = (method, path)
        try:
            return self._apis[key]
        except KeyError:
            api = rest_api(method, path)
            if len(self._apis) < _KNOWN_PATHS:
                self._apis[key] = api
            return api

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
        self.batch_rows.observe(rows)

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
