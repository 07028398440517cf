"""Serving latency and throughput, REST and gRPC, against the in-process floor, same run.

    .venv/bin/python -m benchmarks.serving [--model-dir serving_model/babyweight]

1. The floor: `serving_default` of the same SavedModel called in this process, one row per call.
2. The server (`python -m serving.server`, a subprocess: a client in the server's process would
   share its event loop and distort both) answering single-row requests over loopback from 1, 8
   and 32 concurrent clients, each level bounded by --requests or --seconds: REST :predict over
   raw keep-alive HTTP/1.1, and gRPC Predict through the stock PredictionServiceStub.
3. Metrics and access logs: the same levels (1 and 32 clients, both protocols) against a second
   server started with --no-metrics --no-access-log, in alternating rounds (medians).
4. Version switches: a third server over a copy of the model, 8 clients predicting while 10 new
   versions are pushed one after another (the pusher's way: staged, then renamed), with pauses
   between; the p99 of the requests sent while a switch was under way (push to the old
   version's release) against the p99 of the same clients during the pauses.

Targets: REST p50 at 1 client within 1.5x the floor's p50 + 1 ms; gRPC p50 at 1 client within
1.2x the floor's p50 + 0.5 ms and below REST's; throughput at 32 clients at least 3x that at 1
client (server-side batching); metrics and access logs cost under 5% of p50; p99 during
switches within 2x the steady p99. Writes benchmarks/results/serving.md (and the README's
serving block).
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.common import argument_parser, markdown_table, publish  # noqa: E402
from benchmarks.serving_clients import (INSTANCE, Connect, clients, free_port,  # noqa: E402
                                        grpc_connect, grpc_predict_request, request_bytes,
                                        rest_connect, run_level, start_server, summary,
                                        wait_healthy)
from serving.settings import DEFAULT_MODEL_DIR, ModelConfig  # noqa: E402

MODEL_NAME = ModelConfig().model_name
PREDICT_PATH = f"/v1/models/{MODEL_NAME}:predict"
OFF_FLAGS = ("--no-metrics", "--no-access-log")
REST, GRPC = "REST :predict", "gRPC Predict"


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
        self.connect: Dict[str, Connect] = {
            REST: rest_connect(self.port, request_bytes(PREDICT_PATH, body)),
            GRPC: grpc_connect(self.grpc_target, grpc_predict_request(MODEL_NAME))}

    def wait(self) -> None:
        wait_healthy(self.port, self.process)

    def batching(self) -> Dict[str, Any]:
        import httpx

        return httpx.get(f"http://127.0.0.1:{self.port}/healthz").json()["batching"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def in_process_floor(version_dir: str, calls: int) -> Dict[str, float]:
    """`serving_default` on one row, called directly: what the server cannot beat.

    Same TensorFlow threading as the server's default, and the same conversion from Python
    values to tensors the server does.
    """
    import tensorflow as tf

    from serving.app import configure_tensorflow
    from serving.settings import BatchingConfig

    configure_tensorflow(BatchingConfig().tf_threads)
    loaded = tf.saved_model.load(version_dir)
    function = loaded.signatures["serving_default"]
    dtypes = {name: spec.dtype for name, spec in function.structured_input_signature[1].items()}

    def call() -> None:
        function(**{name: tf.constant([INSTANCE[name]], dtype) for name, dtype in dtypes.items()})

    for _ in range(50):
        call()
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        begun = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - begun)
    elapsed = time.perf_counter() - started
    values = np.array(latencies) * 1e3
    return {"requests": calls, "errors": 0, "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)), "throughput": calls / elapsed}


def protocol_levels(server: Server, levels: List[int], requests: int, seconds: float
                    ) -> List[Dict[str, Any]]:
    """REST and gRPC at each concurrency level, with the server's rows per model call."""
    records = []
    for count in levels:
        for protocol in (REST, GRPC):
            before = server.batching()
            result = run_level(server.connect[protocol], count, requests, seconds)
            after = server.batching()
            calls = after["model_calls"] - before["model_calls"]
            rows = after["rows"] - before["rows"]
            records.append({"setup": protocol, "clients": count, **result,
                            "rows_per_model_call": rows / calls if calls else 0.0})
            print(f"{protocol}, {count} clients: {result}", flush=True)
    return records


def metrics_on_off(on: Server, off: Server, levels: List[int], requests: int, rounds: int
                   ) -> List[Dict[str, Any]]:
    """Both protocols with metrics and access logs on (defaults) and off, alternating rounds;
    the median of the rounds' p50 and p99."""
    runs: Dict[Tuple[str, str, int], List[Dict[str, Any]]] = {}
    for _ in range(rounds):
        for count in levels:
            for protocol in (REST, GRPC):
                for name, server in (("on", on), ("off", off)):
                    runs.setdefault((protocol, name, count), []).append(
                        run_level(server.connect[protocol], count, requests, 60.0))
    return [{"setup": f"{protocol}, metrics and access log {name}", "clients": count,
             "requests": sum(r["requests"] for r in found),
             "errors": sum(r["errors"] for r in found),
             "p50_ms": statistics.median(r["p50_ms"] for r in found),
             "p99_ms": statistics.median(r["p99_ms"] for r in found), "throughput": 0.0}
            for (protocol, name, count), found in runs.items()]


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

    async def run() -> Tuple[List[Tuple[float, float]], List[str], float]:
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

    samples, errors, _ = asyncio.run(run())
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


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def _notes(records: List[Dict[str, Any]], floor: Dict[str, float], args: argparse.Namespace
           ) -> List[str]:
    by = {(r["setup"], r["clients"]): r for r in records}
    notes = []
    rest, grpc = by.get((REST, 1)), by.get((GRPC, 1))
    if rest and grpc:
        bound = 1.5 * floor["p50_ms"] + 1.0
        notes.append(f"- REST p50 at 1 client: {rest['p50_ms']:.2f} ms; target <= 1.5 x "
                     f"{floor['p50_ms']:.2f} + 1 = {bound:.2f} ms: "
                     f"{_verdict(rest['p50_ms'] <= bound)}")
        bound = 1.2 * floor["p50_ms"] + 0.5
        notes.append(f"- gRPC p50 at 1 client: {grpc['p50_ms']:.2f} ms; target <= 1.2 x "
                     f"{floor['p50_ms']:.2f} + 0.5 = {bound:.2f} ms and below REST's "
                     f"{rest['p50_ms']:.2f} ms: "
                     f"{_verdict(grpc['p50_ms'] <= bound and grpc['p50_ms'] < rest['p50_ms'])}")
    for protocol in (REST, GRPC):
        if (protocol, 1) in by and (protocol, 32) in by:
            ratio = by[(protocol, 32)]["throughput"] / by[(protocol, 1)]["throughput"]
            notes.append(f"- {protocol} throughput at 32 clients / 1 client: {ratio:.1f}x; "
                         f"target >= 3x: {_verdict(ratio >= 3)}")
    for (setup, count), on in sorted(by.items()):
        if setup.endswith("access log on"):
            off = by[(setup[:-2] + "off", count)]
            change = (on["p50_ms"] / off["p50_ms"] - 1) * 100
            notes.append(f"- {setup.split(',')[0]} p50 at {count} client(s) with metrics and "
                         f"access log on: {change:+.1f}% vs off; target under +5%: "
                         f"{_verdict(change < 5)}")
    during = next((r for r in records if "during" in r["setup"]), None)
    if during is not None:
        steady = by[(f"{REST}, no switch", args.switch_clients)]
        ratio = during["p99_ms"] / steady["p99_ms"]
        notes.append(f"- p99 during {args.switches} version switches at {args.switch_clients} "
                     f"clients (each {during['switch_seconds']:.1f} s from push to the old "
                     f"version's release): {during['p99_ms']:.2f} ms, {ratio:.2f}x the "
                     f"{steady['p99_ms']:.2f} ms with no switch; target <= 2x: "
                     f"{_verdict(ratio <= 2)}")
    return notes


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argument_parser("serving", __doc__)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="Versions directory to serve (default: %(default)s).")
    parser.add_argument("--clients", default="1,8,32", help="Concurrency levels.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per level.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Time limit per level.")
    parser.add_argument("--overhead-clients", default="1,32",
                        help="Levels of the metrics-and-access-log on/off comparison ('' = "
                        "skip it).")
    parser.add_argument("--overhead-rounds", type=int, default=3,
                        help="Alternating rounds of that comparison.")
    parser.add_argument("--switches", type=int, default=10,
                        help="Version switches under load (0 = skip that part).")
    parser.add_argument("--switch-clients", type=int, default=8,
                        help="Clients predicting during the switches.")
    parser.add_argument("--steady-seconds", type=float, default=2.0,
                        help="Seconds with no switch before each switch and after the last "
                        "(the comparison).")
    parser.add_argument("--server-args", default="",
                        help="Extra server flags, e.g. '--batch-timeout-ms 1'.")
    parser.add_argument("--note", default="",
                        help="A line added under the table, e.g. how loaded the machine was.")
    return parser.parse_args(argv)


def _levels(text: str) -> List[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def measure_servers(args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Parts 2 and 3: the protocols at each level, then metrics and access logs on vs off."""
    work = pathlib.Path(tempfile.mkdtemp())
    extra = tuple(args.server_args.split())
    on = Server(args.model_dir, work, "on", extra)
    off = Server(args.model_dir, work, "off", (*extra, *OFF_FLAGS))
    try:
        on.wait()
        off.wait()
        records = protocol_levels(on, _levels(args.clients), args.requests, args.seconds)
        overhead = _levels(args.overhead_clients)
        if overhead:
            records += metrics_on_off(on, off, overhead, max(200, args.requests // 2),
                                      args.overhead_rounds)
    finally:
        on.stop()
        off.stop()
        shutil.rmtree(work, ignore_errors=True)
    return records


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from serving.model_store import resolve_version

    try:
        version, version_dir = resolve_version(args.model_dir)
    except FileNotFoundError as error:
        print(f"{error}\nRun the pipeline first (`make`) or pass --model-dir.", file=sys.stderr)
        return 1
    print(f"Model: {version_dir}")
    floor = in_process_floor(version_dir, args.requests)
    # This process is now the client; a full GC of TensorFlow's objects here would show up as
    # server latency.
    gc.collect()
    gc.freeze()
    records: List[Dict[str, Any]] = [{"setup": "in-process serving_default", "clients": 1,
                                      **floor}]
    records += measure_servers(args)
    if args.switches > 0:
        records += switch_level(version_dir, args.switch_clients, args.switches,
                                args.steady_seconds)
    headers = ["setup", "clients", "requests", "errors", "p50 ms", "p99 ms", "max ms",
               "requests/s", "rows per model call"]
    rows = [[r["setup"], r["clients"], r["requests"], r["errors"], r["p50_ms"], r["p99_ms"],
             r.get("max_ms", ""), r["throughput"] or "", r.get("rows_per_model_call", "")]
            for r in records]
    text = (f"{markdown_table(headers, rows)}\n\nModel version {version}; server flags: "
            f"`{args.server_args or '(defaults)'}`; single-row requests, loopback, keep-alive "
            "connections (REST) and channels (gRPC). On/off rows: medians of "
            f"{args.overhead_rounds} alternating rounds.\n" + (f"{args.note}\n" if args.note
                                                                else "")
            + "\n".join(_notes(records, floor, args)))
    publish("serving", text, records, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
