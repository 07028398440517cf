"""The serving benchmarks' clients: a server subprocess, and REST and gRPC load at N clients.

REST goes over raw HTTP/1.1 keep-alive connections on asyncio sockets, so the client costs
little; gRPC goes through the stock `PredictionServiceStub` of tensorflow-serving-api on
grpc.aio, one channel per client, as a team's own client would call TF Serving.
"""
from __future__ import annotations

import asyncio
import os
import pathlib
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Tuple

import numpy as np

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The course's app request: one row.
INSTANCE = {"is_male": "True", "mother_age": 26.0, "plurality": "Single(1)",
            "gestation_weeks": 39}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: str, port: int, log_path: pathlib.Path,
                 extra: Tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if "--grpc-port" not in extra:
        extra = (*extra, "--grpc-port", "0")
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-dir", model_dir, "--port", str(port),
         *extra], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_healthy(port: int, process: subprocess.Popen, timeout: float = 120.0) -> Dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            if answer.status_code == 200:
                return answer.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError("server did not become healthy")


def request_bytes(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# One client's connection: returns `call`, which sends one request and returns None or an error.
Connect = Callable[[], Awaitable[Tuple[Callable[[], Awaitable[str]], Callable[[], Any]]]]


def rest_connect(port: int, request: bytes) -> Connect:
    async def connect() -> Tuple[Callable[[], Awaitable[str]], Callable[[], Any]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def call() -> str:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                return head.split(b"\r\n", 1)[0].decode() + " " + body.decode()[:200]
            return ""
        return call, writer.close
    return connect


def grpc_predict_request(model_name: str) -> Any:
    """The course's row as TF Serving's PredictRequest (one tensor of shape [1] per input)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    for name, value in INSTANCE.items():
        dtype = tf.string if isinstance(value, str) else tf.float32
        request.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype))
    return request


def grpc_connect(target: str, request: Any) -> Connect:
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    async def connect() -> Tuple[Callable[[], Awaitable[str]], Callable[[], Any]]:
        channel = grpc.aio.insecure_channel(target)
        await channel.channel_ready()
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

        async def call() -> str:
            try:
                await stub.Predict(request, timeout=60)
            except grpc.aio.AioRpcError as error:
                return f"{error.code().name}: {error.details()}"
            return ""
        return call, channel.close
    return connect


async def _client(connect: Connect, deadline: float, budget: List[int],
                  samples: List[Tuple[float, float]], errors: List[str],
                  stop: "asyncio.Event | None" = None) -> None:
    """One client sending one request at a time until the budget, the deadline or `stop`."""
    call, close = await connect()
    try:
        while budget[0] > 0 and time.perf_counter() < deadline and not (stop and stop.is_set()):
            budget[0] -= 1
            started = time.perf_counter()
            error = await call()
            samples.append((started, time.perf_counter() - started))
            if error:
                errors.append(error)
    finally:
        closed = close()
        if asyncio.iscoroutine(closed):
            await closed


async def clients(connect: Connect, count: int, requests: int, seconds: float,
                  stop: "asyncio.Event | None" = None
                  ) -> Tuple[List[Tuple[float, float]], List[str], float]:
    """`count` concurrent clients; ((start, latency) per request, errors, elapsed seconds)."""
    samples: List[Tuple[float, float]] = []
    errors: List[str] = []
    budget = [requests]
    started = time.perf_counter()
    await asyncio.gather(*(_client(connect, started + seconds, budget, samples, errors, stop)
                           for _ in range(count)))
    return samples, errors, time.perf_counter() - started


def summary(latencies: List[float], errors: List[str], elapsed: float) -> Dict[str, Any]:
    values = np.array(latencies) * 1e3
    return {"requests": len(latencies), "errors": len(errors),
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()), "throughput": len(latencies) / elapsed,
            "first_error": errors[0] if errors else ""}


def run_level(connect: Connect, count: int, requests: int, seconds: float,
              warm: bool = True) -> Dict[str, Any]:
    """A warm-up (not counted), then `count` clients until `requests` or `seconds` end."""
    if warm:
        asyncio.run(clients(connect, count, max(50, 5 * count), 5.0))
    samples, errors, elapsed = asyncio.run(clients(connect, count, requests, seconds))
    return summary([latency for _, latency in samples], errors, elapsed)
