"""The per-request series: requests by model, version, API, protocol and status, their latency,
and TF Serving's own request count and latency under its names.

Why not prometheus-client's Counter and Histogram: each of their updates takes a lock of its
own, and a histogram's walks its buckets one by one in Python, so a request paid a dozen
locked updates on the thread that answers requests. Here one request is one lookup of its
series (made once per label set), one bisect per histogram and one lock around plain integer
updates. The lock stays: REST's event loop and gRPC's handler threads update the same series.
The exposition is the one prometheus-client writes for its own types (`_total`, `_bucket`,
`_count`, `_sum`, `_created`).
"""
from __future__ import annotations

import bisect
import itertools
import math
import threading
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# TF Serving's own request metrics, under the names its Prometheus endpoint gives them, so a
# dashboard built for TF Serving reads this server too (tensorflow_serving/servables/tensorflow/
# util.cc): the count by model and status code of Predict/Classify/Regress, and the latency in
# microseconds of the successful ones by model, API and entrypoint, on TF Serving's buckets.
TF_REQUEST_COUNT = ":tensorflow:serving:request_count"
TF_REQUEST_LATENCY = ":tensorflow:serving:request_latency"
TF_LATENCY_BUCKETS = tuple(10 * 1.8 ** i for i in range(33))
_TF_APIS = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}
_REQUESTS = "babyweight_serving_requests"
_LATENCY = "babyweight_serving_request_latency_seconds"


class _Count:
    __slots__ = ("value", "created")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()


class _Histogram:
    """Non-cumulative counts per bucket (the last is +Inf) and the sum of what was observed."""
    __slots__ = ("bounds", "counts", "sum", "created")

    def __init__(self, bounds: Tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.created = time.time()

    def copy(self) -> Tuple[List[int], float, float]:
        return list(self.counts), self.sum, self.created


class BatchRows:
    """A histogram of the rows in each model call, for one model, as prometheus-client's
    Histogram writes it.

    Why not that Histogram: each observation takes a lock for each of its bucket's and sum's
    updates and walks the buckets in Python, once per model call on the thread that makes it;
    here it is one bisect and one lock around two plain updates.
    """

    def __init__(self, name: str, documentation: str, model: str,
                 bounds: Tuple[float, ...]) -> None:
        self._name, self._documentation, self._model = name, documentation, model
        self._histogram = _Histogram(tuple(float(bound) for bound in bounds))
        self._lock = threading.Lock()

    def observe(self, rows: float) -> None:
        histogram = self._histogram
        index = bisect.bisect_left(histogram.bounds, rows)
        with self._lock:
            histogram.counts[index] += 1
            histogram.sum += rows

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            copied = self._histogram.copy()
        family = HistogramMetricFamily(self._name, self._documentation, labels=["model"])
        _add_histogram(family, self._name, {"model": self._model}, self._histogram.bounds,
                       copied)
        yield family


# One label set's series: its count, its latency histogram, TF Serving's count of its status
# code (None for an API TF Serving does not count) and TF Serving's latency (successes only).
Series = Tuple[_Count, _Histogram, Optional[_Count], Optional[_Histogram]]


class RequestMetrics:
    """A prometheus-client collector of the request series; `observe` is the request path."""

    def __init__(self, model: str, rest_code: Callable[[str], str]) -> None:
        self.model = model
        self._rest_code = rest_code
        self._lock = threading.Lock()
        self._series: Dict[Tuple[str, str, str, str], Series] = {}
        self.counts: Dict[Tuple[str, str, str, str], _Count] = {}  # (version, api, protocol, status)
        self.latency: Dict[Tuple[str, str], _Histogram] = {}  # (api, protocol)
        self.tf_counts: Dict[str, _Count] = {}  # TF Serving's status code
        self.tf_latency: Dict[Tuple[str, str], _Histogram] = {}  # (API, entrypoint)

    def observe(self, api: str, protocol: str, status: str, version: str,
                seconds: float) -> None:
        series = self._series.get((api, protocol, status, version))
        if series is None:
            series = self._new_series(api, protocol, status, version)
        count, latency, tf_count, tf_latency = series
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        if tf_latency is None:
            with self._lock:
                count.value += 1
                latency.counts[index] += 1
                latency.sum += seconds
                if tf_count is not None:
                    tf_count.value += 1
            return
        micros = seconds * 1e6
        tf_index = bisect.bisect_left(TF_LATENCY_BUCKETS, micros)
        with self._lock:
            count.value += 1
            latency.counts[index] += 1
            latency.sum += seconds
            tf_count.value += 1  # type: ignore[union-attr]
            tf_latency.counts[tf_index] += 1
            tf_latency.sum += micros

    def _new_series(self, api: str, protocol: str, status: str, version: str) -> Series:
        with self._lock:  # two threads seeing a new label set at once make it once
            key = (api, protocol, status, version)
            found = self._series.get(key)
            if found is not None:
                return found
            count = self.counts[(version, api, protocol, status)] = _Count()
            latency = self.latency.get((api, protocol))
            if latency is None:
                latency = self.latency[(api, protocol)] = _Histogram(LATENCY_BUCKETS)
            tf_api, tf_count, tf_latency = _TF_APIS.get(api), None, None
            if tf_api is not None:
                tf_code = status if protocol == "grpc" else self._rest_code(status)
                tf_count = self.tf_counts.get(tf_code)
                if tf_count is None:
                    tf_count = self.tf_counts[tf_code] = _Count()
                if tf_code == "OK":  # TF Serving times the successful requests only
                    entry = (tf_api, protocol.upper())
                    tf_latency = self.tf_latency.get(entry)
                    if tf_latency is None:
                        tf_latency = self.tf_latency[entry] = _Histogram(TF_LATENCY_BUCKETS)
            series = self._series[key] = (count, latency, tf_count, tf_latency)
            return series

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # a consistent copy: no request's update is half in it
            counts = [(key, c.value, c.created) for key, c in self.counts.items()]
            latency = [(key, h.copy()) for key, h in self.latency.items()]
        requests = CounterMetricFamily(_REQUESTS, "Requests answered, by API, protocol and status",
                                       labels=["model", "version", "api", "protocol", "status"])
        for key, value, created in counts:
            requests.add_metric([self.model, *key], value, created=created)
        yield requests
        family = HistogramMetricFamily(_LATENCY, "Wall time of a request",
                                       labels=["model", "api", "protocol"])
        for (api, protocol), copied in latency:
            _add_histogram(family, _LATENCY, {"model": self.model, "api": api,
                                              "protocol": protocol}, LATENCY_BUCKETS, copied)
        yield family

    def tf_serving(self) -> Iterator[Metric]:
        """TF Serving's families: an untyped count (no `_total`) and a histogram without
        `_created`, as TF Serving's exposition writes them."""
        with self._lock:
            counts = [(code, c.value) for code, c in self.tf_counts.items()]
            latencies = [(key, h.copy()) for key, h in self.tf_latency.items()]
        count = Metric(TF_REQUEST_COUNT, "The total number of requests.", "unknown")
        for code, value in counts:
            count.add_sample(TF_REQUEST_COUNT, {"model_name": self.model, "status": code}, value)
        yield count
        latency = Metric(TF_REQUEST_LATENCY, "Distribution of wall time (in microseconds) for "
                         "Tensorflow Serving request.", "histogram")
        for (api, entrypoint), copied in latencies:
            _add_histogram(latency, TF_REQUEST_LATENCY, {"model_name": self.model, "API": api,
                                                         "entrypoint": entrypoint},
                           TF_LATENCY_BUCKETS, copied, created=False)
        yield latency


def _add_histogram(family: Metric, name: str, labels: Dict[str, str],
                   bounds: Tuple[float, ...], copied: Tuple[List[int], float, float],
                   created: bool = True) -> None:
    counts, total, at = copied
    for bound, seen in zip((*bounds, math.inf), itertools.accumulate(counts)):
        family.add_sample(name + "_bucket", {**labels, "le": floatToGoString(bound)}, seen)
    family.add_sample(name + "_count", labels, sum(counts))
    family.add_sample(name + "_sum", labels, total)
    if created:
        family.add_sample(name + "_created", labels, at)
