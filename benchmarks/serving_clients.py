"""The serving benchmarks' clients: a server subprocess, and REST and gRPC load at N clients.

REST goes over raw HTTP/1.1 keep-alive connections on asyncio sockets with a request built
once, so the client costs little; gRPC makes sync unary calls with grpc's own client, on its
own channel in its own thread per client, with the request message serialized once and each
response parsed into tensorflow-serving-api's message.
What the client itself costs is measured, not hidden: each level reports the CPU time of this
process (all its threads, gRPC's own included) per request.
"""
from __future__ import annotations

import asyncio
import os
import threading
import pathlib
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, Dict, List, Tuple, Union

import numpy as np

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
# The course's app request: one row.
INSTANCE = {"is_male": "True", "mother_age": 26.0, "plurality": "Single(1)",
            "gestation_weeks": 39}


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


# One client's connection: returns `call`, which sends one request and returns "" or an error.
Connect = Callable[[], Awaitable[Tuple[Callable[[], Awaitable[str]], Callable[[], Any]]]]
# The same for a client in its own thread (blocking calls).
ThreadConnect = Callable[[], Tuple[Callable[[], str], Callable[[], Any]]]


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


def grpc_method(service: Any, method: str) -> Tuple[str, Any]:
    """(call path, response class) of a method of a generated `*_pb2` file's service."""
    from google.protobuf import symbol_database

    (found,) = service.DESCRIPTOR.services_by_name.values()
    described = found.methods_by_name[method]
    response = symbol_database.Default().GetSymbol(described.output_type.full_name)
    return f"/{found.full_name}/{method}", response


def grpc_connect(target: str, request: Any, method: Tuple[str, Any]) -> ThreadConnect:
    """A sync unary call of `method` (grpc_method's) on its own channel, ready before the
    timing starts.

    The request is serialized once, as REST's client sends bytes built once; the response is
    still parsed into its message by grpc (the response class's FromString) and its status
    checked, as a stub's call does.
    """
    import grpc

    path, response = method
    payload = request.SerializeToString()

    def connect() -> Tuple[Callable[[], str], Callable[[], Any]]:
        channel = grpc.insecure_channel(target)
        grpc.channel_ready_future(channel).result(timeout=60)
        bound = channel.unary_unary(path, request_serializer=None,
                                    response_deserializer=response.FromString)

        def call() -> str:
            try:
                bound(payload, timeout=60)
            except grpc.RpcError as error:
                return f"{error.code().name}: {error.details()}"
            return ""
        return call, channel.close
    return connect


Samples = List[Tuple[float, float]]  # (start, latency) per request


async def _client(call: Callable[[], Awaitable[str]], deadline: float, budget: List[int],
                  samples: Samples, errors: List[str],
                  stop: "asyncio.Event | None" = None) -> None:
    """One client sending one request at a time until the budget, the deadline or `stop`."""
    while budget[0] > 0 and time.perf_counter() < deadline and not (stop and stop.is_set()):
        budget[0] -= 1
        started = time.perf_counter()
        error = await call()
        samples.append((started, time.perf_counter() - started))
        if error:
            errors.append(error)


async def clients(connect: Connect, count: int, requests: int, seconds: float,
                  stop: "asyncio.Event | None" = None) -> Tuple[Samples, List[str], float, float]:
    """`count` concurrent clients, connected before the clock starts; (samples, errors,
    elapsed seconds, this process's CPU seconds meanwhile)."""
    samples: Samples = []
    errors: List[str] = []
    budget = [requests]
    connections = await asyncio.gather(*(connect() for _ in range(count)))
    cpu, started = time.process_time(), time.perf_counter()
    try:
        await asyncio.gather(*(_client(call, started + seconds, budget, samples, errors, stop)
                               for call, _ in connections))
        return (samples, errors, time.perf_counter() - started, time.process_time() - cpu)
    finally:
        for _, close in connections:
            closed = close()
            if asyncio.iscoroutine(closed):
                await closed


def thread_clients(connect: ThreadConnect, count: int, requests: int, seconds: float
                   ) -> Tuple[Samples, List[str], float, float]:
    """`count` client threads, connected before the clock starts; as `clients`."""
    connections = [connect() for _ in range(count)]
    samples: Samples = []
    errors: List[str] = []
    budget = iter(range(requests))  # next() on it is atomic: the threads share it
    go = threading.Barrier(count + 1)
    deadline = [0.0]

    def run(call: Callable[[], str]) -> None:
        go.wait()
        while time.perf_counter() < deadline[0] and next(budget, None) is not None:
            started = time.perf_counter()
            error = call()
            samples.append((started, time.perf_counter() - started))
            if error:
                errors.append(error)

    threads = [threading.Thread(target=run, args=(call,), daemon=True)
               for call, _ in connections]
    for thread in threads:
        thread.start()
    cpu, started = time.process_time(), time.perf_counter()
    deadline[0] = started + seconds
    go.wait()
    for thread in threads:
        thread.join()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    for _, close in connections:
        close()
    return samples, errors, elapsed, cpu


def summary(latencies: List[float], errors: List[str], elapsed: float) -> Dict[str, Any]:
    values = np.array(latencies) * 1e3
    return {"requests": len(latencies), "errors": len(errors),
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()), "throughput": len(latencies) / elapsed,
            "first_error": errors[0] if errors else ""}


def _run(connect: Union[Connect, ThreadConnect], threaded: bool, count: int, requests: int,
         seconds: float) -> Tuple[Samples, List[str], float, float]:
    if threaded:
        return thread_clients(connect, count, requests, seconds)  # type: ignore[arg-type]
    return asyncio.run(clients(connect, count, requests, seconds))  # type: ignore[arg-type]


def run_level(connect: Union[Connect, ThreadConnect], count: int, requests: int,
              seconds: float, warm: bool = True, threaded: bool = False) -> Dict[str, Any]:
    """A warm-up (not counted), then `count` clients until `requests` or `seconds` end; with
    the client's CPU milliseconds per request (this process, all threads)."""
    if warm:
        _run(connect, threaded, count, max(50, 5 * count), 5.0)
    samples, errors, elapsed, cpu = _run(connect, threaded, count, requests, seconds)
    result = summary([latency for _, latency in samples], errors, elapsed)
    result["client_cpu_ms"] = cpu * 1e3 / max(1, len(samples))
    return result
