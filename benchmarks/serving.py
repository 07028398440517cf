"""Serving latency and throughput, REST and gRPC, against the in-process floor, same run.

    .venv/bin/python -m benchmarks.serving [--model-dir serving_model/babyweight]

Just the in-process, REST and gRPC rows (parts 1 and 2), in about a minute, printed only
(without --no-write they are written, without the other parts' rows):

    .venv/bin/python -m benchmarks.serving --overhead-clients '' --switches 0 --no-write

1. The floor: `serving_default` of the same SavedModel called in this process as the server
   calls it (serving/model_store.py: in a Session), one row per call, back to back, and again
   with a short sleep before each call (a server's call follows a wait on the network, so the
   model runs on a thread that had gone idle); beside it the same signature of
   tf.saved_model.load's object, back to back (what the Session saves).
2. The server (`python -m serving.server`, a subprocess: a client in the server's process would
   share its interpreter and distort both) answering single-row requests over loopback from 1,
   8 and 32 concurrent clients, each level bounded by --requests or --seconds: REST :predict
   over raw keep-alive HTTP/1.1, and gRPC Predict as sync unary calls (a channel per client
   thread; each side's request built once, each response parsed). At 1 client also each
   protocol's status call, which runs no model (what the transport and the client cost).
   --rounds alternates the floor and all of these; the table shows each row's median over
   the rounds (so a change of the machine's load during the run moves every row alike). The
   client's CPU per request (this process, every thread) is a column.
3. Metrics and access logs: 1, 8 and 32 clients, both protocols, on a server with the
   defaults against one started with --no-metrics --no-access-log, in rounds that measure both
   back to back (order alternating), shared among --overhead-pairs pairs of fresh servers:
   each round's change of p50, their median and the interval the rounds give it; the target
   is called met or not only when the interval is on one side of it.
4. Version switches: a third server over a copy of the model, 8 clients predicting while 10 new
   versions are pushed one after another (the pusher's way: staged, then renamed), with pauses
   between; the p99 of the requests sent while a switch was under way (push to the old
   version's release) against the p99 of the same clients during the pauses.
5. What recording costs per request, measured in this process
   (benchmarks/serving_record_cost.py): the CPU time of the real Recorder, metrics and
   access-log calls on the request and answer the app builds, and of the access log's writer
   per line, in alternating on and off blocks; each protocol's clients x that cost as a share
   of its p50 at each level of this run, the target called met or not when the blocks'
   interval is on one side of it (--record-blocks 0 skips it; alone, against the p50s last
   written: `python -m benchmarks.serving_record_cost --no-write`).

Targets: REST p50 at 1 client within 1.5x the floor's p50 + 1 ms; gRPC p50 at 1 client within
1.2x the floor's p50 + 0.5 ms and below REST's; throughput at 32 clients at least 3x that at 1
client (server-side batching); metrics and access logs cost under 5% of p50 (parts 3 and 5);
p99 during switches within 2x the steady p99. Writes benchmarks/results/serving.md (and the
README's serving block).
"""
from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import pathlib
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks import (harness, serving_overhead, serving_record_cost,  # noqa: E402
                        serving_report)
from benchmarks.harness import Output, publish  # noqa: E402
from benchmarks.serving_clients import (INSTANCE, clients,  # noqa: E402
                                        grpc_connect, grpc_method, grpc_predict_request,
                                        request_bytes, rest_connect, run_level, start_server,
                                        summary, wait_healthy)
from common.config import setting  # noqa: E402
from common.net import free_port  # noqa: E402
from serving.settings import ModelConfig  # noqa: E402

MODEL_NAME = ModelConfig().model_name
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
OFF_FLAGS = ("--no-metrics", "--no-access-log")
REST, GRPC, REST_STATUS, GRPC_STATUS, FLOOR, FLOOR_PAUSED, FLOOR_LOADED = (
    serving_report.REST, serving_report.GRPC, serving_report.REST_STATUS,
    serving_report.GRPC_STATUS, serving_report.FLOOR, serving_report.FLOOR_PAUSED,
    serving_report.FLOOR_LOADED)
# A server's model call follows a wait on the network, not the previous call, so TensorFlow's
# threads have gone to sleep and the caches have cooled; the paused floor calls the model after
# a sleep of about one loopback round trip, to show what that costs the same call.
FLOOR_PAUSE_S = serving_report.FLOOR_PAUSE_MS / 1e3
THREADED = (GRPC, GRPC_STATUS)  # sync gRPC calls, one channel per client thread


def _grpc_status_connect(target: str) -> Any:
    """ModelService.GetModelStatus: a gRPC call that runs no model."""
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    return grpc_connect(target, request, grpc_method(model_service_pb2, "GetModelStatus"))


def _grpc_predict_connect(target: str) -> Any:
    from tensorflow_serving.apis import prediction_service_pb2

    return grpc_connect(target, grpc_predict_request(MODEL_NAME),
                        grpc_method(prediction_service_pb2, "Predict"))


class Server:
    """A server subprocess with REST and gRPC ports, stopped by `stop()`."""

    def __init__(self, model_dir: str, work: pathlib.Path, name: str,
                 extra: Tuple[str, ...] = ()) -> None:
        import json

        self.port, grpc_port = free_port(), free_port()
        self.log_path = work / f"{name}.log"
        self.process = start_server(model_dir, self.port, self.log_path,
                                    (*extra, "--grpc-port", str(grpc_port)))
        self.grpc_target = f"127.0.0.1:{grpc_port}"
        body = json.dumps({"instances": [INSTANCE]}).encode()
        status = (f"GET /v1/models/{MODEL_NAME} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                  ).encode()
        self.connect: Dict[str, Any] = {
            REST: rest_connect(self.port, request_bytes(PREDICT_PATH, body)),
            GRPC: _grpc_predict_connect(self.grpc_target),
            REST_STATUS: rest_connect(self.port, status),
            GRPC_STATUS: _grpc_status_connect(self.grpc_target)}

    def level(self, setup: str, count: int, requests: int, seconds: float) -> Dict[str, Any]:
        return run_level(self.connect[setup], count, requests, seconds,
                         threaded=setup in THREADED)

    def wait(self) -> None:
        wait_healthy(self.port, self.process)

    def batching(self) -> Dict[str, Any]:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}/healthz").json()["batching"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


class Floor:
    """`serving_default` on one row, called in process as the server calls it: what the
    server cannot beat.

    The server's own loading and call (serving/model_store.py's load_version and
    ServedModel.predict, on the course row's canonical columns), with the server's default
    TensorFlow threading. Loaded once; `measure` may run between other rows. Beside it, the
    same signature of tf.saved_model.load's object (FLOOR_LOADED), for what the Session saves.
    """

    def __init__(self, version_dir: str) -> None:
        import tensorflow as tf

        from serving.app import configure_tensorflow
        from serving.model_store import load_version
        from serving.settings import BatchingConfig
        from serving.validation import DEFAULT_SIGNATURE, feature_columns_from_instances

        try:
            configure_tensorflow(BatchingConfig().tf_threads)
        except RuntimeError:  # TensorFlow already ran in this process (a test): as it is
            pass
        self._served = load_version(0, version_dir)
        columns, _ = feature_columns_from_instances([dict(INSTANCE)], 1)

        def call() -> None:
            self._served.predict(DEFAULT_SIGNATURE, columns)

        self._loaded = tf.saved_model.load(version_dir)
        function = self._loaded.signatures[DEFAULT_SIGNATURE]
        dtypes = self._served.signatures[DEFAULT_SIGNATURE].input_dtypes

        def call_loaded() -> None:
            function(**{name: tf.constant(values, dtypes[name])
                        for name, values in columns.items()})
        self._calls = {FLOOR: call, FLOOR_LOADED: call_loaded}
        for _ in range(50):
            call()
            call_loaded()

    def measure(self, calls: int, pause_s: float = 0.0, setup: str = FLOOR) -> Dict[str, Any]:
        """Back to back, or with `pause_s` of sleep before each call (FLOOR_PAUSED); `setup`
        FLOOR_LOADED: the loaded object's signature, back to back."""
        call = self._calls[setup]
        latencies = []
        started = time.perf_counter()
        for _ in range(calls):
            if pause_s:
                time.sleep(pause_s)
            begun = time.perf_counter()
            call()
            latencies.append(time.perf_counter() - begun)
        elapsed = time.perf_counter() - started
        values = np.array(latencies) * 1e3
        return {"setup": FLOOR_PAUSED if pause_s else setup, "clients": 1, "requests": calls,
                "errors": 0,
                "p50_ms": float(np.percentile(values, 50)),
                "p99_ms": float(np.percentile(values, 99)), "throughput": calls / elapsed}


def protocol_levels(server: Server, floor: Floor, levels: List[int], requests: int,
                    seconds: float, rounds: int) -> List[Dict[str, Any]]:
    """The floor, REST and gRPC at each level (and the status calls at 1 client), in
    alternating rounds; with the server's rows per model call."""
    runs: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    plan = [(setup, count) for count in levels for setup in (REST, GRPC)]
    if 1 in levels:
        plan += [(REST_STATUS, 1), (GRPC_STATUS, 1)]
    for round_number in range(rounds):
        runs.setdefault((FLOOR, 1), []).append(floor.measure(requests))
        runs.setdefault((FLOOR_PAUSED, 1), []).append(floor.measure(requests, FLOOR_PAUSE_S))
        runs.setdefault((FLOOR_LOADED, 1), []).append(
            floor.measure(requests, setup=FLOOR_LOADED))
        for setup, count in plan:
            before = server.batching()
            result = server.level(setup, count, requests, seconds)
            after = server.batching()
            calls = after["model_calls"] - before["model_calls"]
            if calls:
                result["rows_per_model_call"] = (after["rows"] - before["rows"]) / calls
            runs.setdefault((setup, count), []).append(result)
            print(f"round {round_number + 1}, {setup}, {count} clients: p50 "
                  f"{result['p50_ms']:.3f} ms, {result['throughput']:.0f}/s, "
                  f"{result['errors']} errors", flush=True)
    return serving_report.median_rows(runs)


def _switch(model_dir: pathlib.Path, version_dir: str, version: int, log_path: pathlib.Path,
            timeout: float = 300.0) -> Tuple[float, float]:
    """Pushes `version` (a copy of `version_dir`); (push time, time the old one was released)."""
    staging = model_dir / f".{version}.incomplete"
    shutil.copytree(version_dir, staging)
    released = log_path.read_text(errors="replace").count("Released version")
    begin = time.perf_counter()
    os.rename(staging, model_dir / str(version))
    deadline = time.monotonic() + timeout
    while log_path.read_text(errors="replace").count("Released version") <= released:
        if time.monotonic() > deadline:
            raise TimeoutError(f"version {version} was not switched in within {timeout} s")
        time.sleep(0.01)
    return begin, time.perf_counter()


def _switch_traffic(server: Server, model_dir: pathlib.Path, version_dir: str, count: int,
                    switches: int, steady_seconds: float
                    ) -> Tuple[List[Tuple[float, float]], List[str], List[Tuple[float, float]]]:
    """REST clients until the last switch's pause ends; (samples, errors, switch windows)."""
    windows: List[Tuple[float, float]] = []

    async def run() -> Tuple[List[Tuple[float, float]], List[str], float, float]:
        stop = asyncio.Event()
        traffic = asyncio.create_task(clients(server.connect[REST], count, 1 << 62, 1e9, stop))
        # Switches alternate with as long a pause, so both see the same background load.
        for version in range(2, switches + 2):
            await asyncio.sleep(steady_seconds)
            windows.append(await asyncio.to_thread(_switch, model_dir, version_dir, version,
                                                   server.log_path))
        await asyncio.sleep(steady_seconds)
        stop.set()
        return await traffic

    samples, errors, _, _ = asyncio.run(run())
    return samples, errors, windows


def switch_level(version_dir: str, count: int, switches: int, steady_seconds: float
                 ) -> List[Dict[str, Any]]:
    """p50/p99/max of requests sent during version switches, and with no switch."""
    work = pathlib.Path(tempfile.mkdtemp())
    model_dir = work / MODEL_NAME
    model_dir.mkdir()
    shutil.copytree(version_dir, model_dir / "1")
    server = Server(str(model_dir), work, "switches", ("--poll-seconds", "0.2",
                                                       "--no-access-log"))
    try:
        server.wait()
        asyncio.run(clients(server.connect[REST], count, max(50, 5 * count), 5.0))  # warm-up
        samples, errors, windows = _switch_traffic(server, model_dir, version_dir, count,
                                                   switches, steady_seconds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    busy = [any(begin <= started <= end for begin, end in windows) for started, _ in samples]
    records: List[Dict[str, Any]] = []
    for setup, during in ((f"{REST}, no switch", False),
                          (f"{REST}, during {switches} switches", True)):
        latencies = [latency for (_, latency), b in zip(samples, busy) if b == during]
        records.append({**summary(latencies, errors, 1.0), "setup": setup, "clients": count,
                        "throughput": 0.0})
    records[1]["switch_seconds"] = float(np.mean([end - begin for begin, end in windows]))
    return records


@dataclasses.dataclass(frozen=True)
class ServingBenchmarkConfig(serving_record_cost.RecordCostConfig):
    """The served model, the load of each part, and what the table notes."""

    clients: str = setting("1,8,32", "Concurrency levels.")
    requests: int = setting(2000, "Requests per level.")
    seconds: float = setting(20.0, "Time limit per level.")
    rounds: int = setting(3, "Alternating rounds of the floor and the protocols (medians).")
    overhead_clients: str = setting(
        "1,8,32", "Levels of the metrics-and-access-log on/off comparison ('' = skip it).")
    overhead_rounds: int = setting(
        9, "Rounds of that comparison (each measures on and off back to back; with 9 the "
        "rounds' second-lowest and second-highest change bound the median change, 96 in 100).")
    overhead_requests: int = setting(1000, "Requests per level and server in each round of it.")
    overhead_pairs: int = setting(
        3, "Pairs of fresh on and off servers the rounds are shared among (two processes "
        "differ by more than the rounds do; several pairs put that in the interval).")
    switches: int = setting(10, "Version switches under load (0 = skip that part).")
    switch_clients: int = setting(8, "Clients predicting during the switches.")
    steady_seconds: float = setting(
        2.0, "Seconds with no switch before each switch and after the last (the comparison).")
    server_args: str = setting("", "Extra server flags, e.g. '--batch-timeout-ms 1'.")
    note: str = setting("", "A line added under the table, e.g. how loaded the machine was.")

    def __post_init__(self) -> None:
        self.levels(), self.overhead_levels()  # malformed lists stop here, before any server

    def levels(self) -> List[int]:
        return harness.counts(self.clients, "--clients")

    def overhead_levels(self) -> List[int]:
        return harness.counts(self.overhead_clients, "--overhead-clients", allow_none=True)


def parse_args(argv: Optional[List[str]]) -> Tuple[ServingBenchmarkConfig, Output]:
    return harness.parse("serving", __doc__, argv, ServingBenchmarkConfig)


def measure_servers(args: ServingBenchmarkConfig, floor: Floor) -> List[Dict[str, Any]]:
    """Parts 1 to 3: the floor and the protocols at each level, then metrics and access logs
    on vs off, on pairs of servers of their own."""
    work = pathlib.Path(tempfile.mkdtemp())
    extra = tuple(args.server_args.split())
    overhead = args.overhead_levels()

    def pair(number: int) -> Tuple[Server, Server]:
        return (Server(args.model_dir, work, f"on-{number}", extra),
                Server(args.model_dir, work, f"off-{number}", (*extra, *OFF_FLAGS)))

    try:
        server = Server(args.model_dir, work, "protocols", extra)
        try:
            server.wait()
            records = protocol_levels(server, floor, args.levels(), args.requests,
                                      args.seconds, max(1, args.rounds))
        finally:
            server.stop()
        if overhead:
            records += serving_overhead.metrics_on_off(
                pair, overhead, args.overhead_requests, max(1, args.overhead_rounds),
                max(1, args.overhead_pairs))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return records


def main(argv: Optional[List[str]] = None) -> int:
    args, output = parse_args(argv)
    try:
        version, version_dir = args.newest_version()
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"Model: {version_dir}")
    load_before = serving_report.load_average()
    floor = Floor(version_dir)
    # This process is now the client; a full GC of TensorFlow's objects here would show up as
    # server latency.
    gc.collect()
    gc.freeze()
    records = measure_servers(args, floor)
    if args.switches > 0:
        records += switch_level(version_dir, args.switch_clients, args.switches,
                                args.steady_seconds)
    costs = (serving_record_cost.measure(args.model_dir, MODEL_NAME, blocks=args.record_blocks,
                                         requests=max(1, args.record_requests))
             if args.record_blocks > 0 else [])
    text = serving_report.text(records, args, version,
                               (load_before, serving_report.load_average()), costs)
    publish("serving", text, records + costs, write=output.write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
