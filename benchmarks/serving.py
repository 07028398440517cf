"""REST serving latency and throughput against the in-process floor, same machine, same run.

    .venv/bin/python -m benchmarks.serving [--model-dir serving_model/babyweight]

1. The floor: `serving_default` of the same SavedModel called in this process, one row per call.
2. The server (`python -m serving.server`, a subprocess: a client in the server's process would
   share its event loop and distort both) answering single-row :predict requests over loopback
   from 1, 8 and 32 concurrent keep-alive clients (raw HTTP/1.1 on asyncio sockets, so the
   client costs little), each level bounded by --requests or --seconds.

3. Version switches: a second server over a copy of the model, 8 clients predicting while 10 new
   versions are pushed one after another (the pusher's way: staged, then renamed), with pauses
   between; the p99 of the requests sent while a switch was under way (push to the old
   version's release) against the p99 of the same clients during the pauses.

Targets: REST p50 at 1 client within 1.5x the floor's p50 + 1 ms; throughput at 32 clients at
least 3x that at 1 client (server-side batching); p99 during switches within 2x the steady p99.
Writes benchmarks/results/serving.md (and the README's serving block, when it has one).
"""
from __future__ import annotations

import asyncio
import gc
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.common import argument_parser, markdown_table, publish  # noqa: E402
from serving.settings import DEFAULT_MODEL_DIR, ModelConfig  # noqa: E402

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


async def _client(port: int, request: bytes, deadline: float, budget: List[int],
                  latencies: List[float], errors: List[str]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body.decode()[:200])
    finally:
        writer.close()


def run_level(port: int, path: str, body: bytes, clients: int, requests: int,
              seconds: float) -> Dict[str, float]:
    """`clients` keep-alive connections sending one request at a time until the budget ends."""
    request = request_bytes(path, body)

    async def run() -> Tuple[List[float], List[str], float]:
        latencies: List[float] = []
        errors: List[str] = []
        budget = [requests]
        started = time.perf_counter()
        await asyncio.gather(*(_client(port, request, started + seconds, budget, latencies,
                                       errors) for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started

    latencies, errors, elapsed = asyncio.run(run())
    values = np.array(latencies) * 1e3
    return {"requests": len(latencies), "errors": len(errors),
            "p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)),
            "throughput": len(latencies) / elapsed, "first_error": errors[0] if errors else ""}


async def _warm(port: int, request: bytes, clients: int) -> None:
    latencies: List[float] = []
    errors: List[str] = []
    budget = [max(50, 5 * clients)]
    deadline = time.perf_counter() + 5
    await asyncio.gather(*(_client(port, request, deadline, budget, latencies, errors)
                           for _ in range(clients)))


async def _timed_clients(port: int, request: bytes, clients: int, stop: asyncio.Event,
                         samples: List[Tuple[float, float]], errors: List[str]) -> None:
    """Keep-alive clients until `stop`, recording (start time, latency) of every request."""
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while not stop.is_set():
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                samples.append((started, time.perf_counter() - started))
                if not head.startswith(b"HTTP/1.1 200"):
                    errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body.decode()[:200])
        finally:
            writer.close()

    await asyncio.gather(*(one() for _ in range(clients)))


def _percentiles(latencies: List[float]) -> Tuple[float, float, float]:
    values = np.array(latencies) * 1e3
    return (float(np.percentile(values, 50)), float(np.percentile(values, 99)),
            float(values.max()))


def switch_level(version_dir: str, clients: int, switches: int, steady_seconds: float
                 ) -> List[Dict[str, object]]:
    """p50/p99/max of requests sent during version switches, and with no switch."""
    work = pathlib.Path(tempfile.mkdtemp())
    model_dir = work / "babyweight"
    model_dir.mkdir()
    shutil.copytree(version_dir, model_dir / "1")
    port = free_port()
    log_path = work / "server.log"
    server = start_server(str(model_dir), port, log_path,
                          ("--poll-seconds", "0.2", "--no-access-log"))
    windows: List[Tuple[float, float]] = []
    try:
        wait_healthy(port, server)
        request = request_bytes(f"/v1/models/{ModelConfig().model_name}:predict",
                                json.dumps({"instances": [INSTANCE]}).encode())
        asyncio.run(_warm(port, request, clients))

        async def run() -> Tuple[List[Tuple[float, float]], List[str], float]:
            samples: List[Tuple[float, float]] = []
            errors: List[str] = []
            stop = asyncio.Event()
            traffic = asyncio.create_task(
                _timed_clients(port, request, clients, stop, samples, errors))
            # Switches alternate with as long a pause, so both see the same background load.
            for version in range(2, switches + 2):
                await asyncio.sleep(steady_seconds)
                windows.append(await asyncio.to_thread(_switch, model_dir, version_dir,
                                                       version, log_path))
            await asyncio.sleep(steady_seconds)
            stop.set()
            await traffic
            return samples, errors

        samples, errors = asyncio.run(run())
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    switching = [any(begin <= started <= end for begin, end in windows) for started, _ in samples]
    steady = [latency for (_, latency), busy in zip(samples, switching) if not busy]
    during = [latency for (_, latency), busy in zip(samples, switching) if busy]
    records: List[Dict[str, object]] = []
    for setup, latencies in (("REST :predict, no switch", steady),
                             (f"REST :predict, during {switches} switches", during)):
        p50, p99, worst = _percentiles(latencies)
        records.append({"setup": setup, "clients": clients, "requests": len(latencies),
                        "errors": len(errors), "p50_ms": p50, "p99_ms": p99, "max_ms": worst,
                        "throughput": 0.0, "first_error": errors[0] if errors else ""})
    records[1]["switch_seconds"] = float(np.mean([end - begin for begin, end in windows]))
    return records


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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argument_parser("serving", __doc__)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="Versions directory to serve (default: %(default)s).")
    parser.add_argument("--clients", default="1,8,32", help="Concurrency levels.")
    parser.add_argument("--requests", type=int, default=2000, help="Requests per level.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Time limit per level.")
    parser.add_argument("--switches", type=int, default=10,
                        help="Version switches under load (0 = skip that part).")
    parser.add_argument("--switch-clients", type=int, default=8,
                        help="Clients predicting during the switches.")
    parser.add_argument("--steady-seconds", type=float, default=2.0,
                        help="Seconds with no switch before each switch and after the last "
                        "(the comparison).")
    parser.add_argument("--server-args", default="",
                        help="Extra server flags, e.g. '--batch-timeout-ms 1'.")
    args = parser.parse_args(argv)

    from serving.model_store import resolve_version

    try:
        version, version_dir = resolve_version(args.model_dir)
    except FileNotFoundError as error:
        print(f"{error}\nRun the pipeline first (`make`) or pass --model-dir.", file=sys.stderr)
        return 1
    print(f"Model: {version_dir}")
    floor = in_process_floor(version_dir, args.requests)
    # This process is now the client; a full GC of TensorFlow's objects here (~170 ms) would
    # show up as server latency.
    gc.collect()
    gc.freeze()
    records: List[Dict[str, object]] = [{"setup": "in-process serving_default", "clients": 1,
                                         **floor}]
    port = free_port()
    log_path = pathlib.Path(tempfile.mkdtemp()) / "server.log"
    server = start_server(args.model_dir, port, log_path, tuple(args.server_args.split()))
    try:
        wait_healthy(port, server)
        path = f"/v1/models/{ModelConfig().model_name}:predict"
        body = json.dumps({"instances": [INSTANCE]}).encode()
        for clients in (int(c) for c in args.clients.split(",")):
            import httpx

            # Warm-up (connections, the server's first batches), not counted.
            asyncio.run(_warm(port, request_bytes(path, body), clients))
            before = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batching"]
            result = run_level(port, path, body, clients, args.requests, args.seconds)
            after = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["batching"]
            calls = after["model_calls"] - before["model_calls"]
            rows = after["rows"] - before["rows"]
            records.append({"setup": "REST :predict", "clients": clients, **result,
                            "model_calls": calls, "rows": rows,
                            "rows_per_model_call": rows / calls if calls else 0.0})
            print(f"{clients} clients: {result}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    switching: List[Dict[str, object]] = []
    if args.switches > 0:
        switching = switch_level(version_dir, args.switch_clients, args.switches,
                                 args.steady_seconds)
        records += switching
        for record in switching:
            print(f"{record['setup']}: {record}", flush=True)

    rest = {r["clients"]: r for r in records if r["setup"] == "REST :predict"}
    headers = ["setup", "clients", "requests", "errors", "p50 ms", "p99 ms", "max ms",
               "requests/s", "rows per model call"]
    rows = [[r["setup"], r["clients"], r["requests"], r["errors"], r["p50_ms"], r["p99_ms"],
             r.get("max_ms", ""), r["throughput"] or "", r.get("rows_per_model_call", "")]
            for r in records]
    table = markdown_table(headers, rows)
    notes = []
    if 1 in rest:
        bound = 1.5 * floor["p50_ms"] + 1.0
        notes.append(f"- p50 at 1 client: {rest[1]['p50_ms']:.2f} ms; target <= 1.5 x "
                     f"{floor['p50_ms']:.2f} + 1 = {bound:.2f} ms: "
                     f"{'met' if rest[1]['p50_ms'] <= bound else 'NOT met'}")
    if 1 in rest and 32 in rest:
        ratio = rest[32]["throughput"] / rest[1]["throughput"]
        notes.append(f"- throughput at 32 clients / 1 client: {ratio:.1f}x; target >= 3x: "
                     f"{'met' if ratio >= 3 else 'NOT met'}")
    if switching:
        steady, during = switching
        ratio = float(during["p99_ms"]) / float(steady["p99_ms"])
        notes.append(f"- p99 during {args.switches} version switches at {args.switch_clients} "
                     f"clients (each {during['switch_seconds']:.1f} s from push to the old "
                     f"version's release): {during['p99_ms']:.2f} ms, {ratio:.1f}x the "
                     f"{steady['p99_ms']:.2f} ms with no switch; target <= 2x: "
                     f"{'met' if ratio <= 2 else 'NOT met'}")
    text = (f"{table}\n\nModel version {version}; server flags: "
            f"`{args.server_args or '(defaults)'}`; single-row requests, loopback, keep-alive.\n"
            + "\n".join(notes))
    publish("serving", text, records, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
