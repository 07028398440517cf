"""Part 5 of the serving benchmark: what recording a request costs, measured in one process.

    .venv/bin/python -m benchmarks.serving_record_cost --no-write [--model-dir DIR]

(alone it prints its table and verdicts against the p50s benchmarks/results/serving.json holds;
benchmarks.serving runs it after its servers and writes it with that run's p50s)

Why: part 3's servers with metrics and the access log on and off differ at p50 by more than
5% on their own (two processes, two rounds of a shared machine), so their comparison cannot
resolve a cost that small. What the server does for a request only when those are on is a
few Python calls; here the real ones are called on the request and the response the real app
builds, many thousands of times, and the CPU time they take is counted:

- REST (serving/recorder.py's Recorder, the outermost middleware; not installed when both are
  off): the scope of a :predict and the ASGI messages the app answered it with, captured once
  from create_app's app serving the model in this process, replayed through the Recorder: it
  notes the status and the version, queues the access line (serving/access_log.py's `line`)
  and counts the request (Metrics.observe, serving/request_metrics.py). With it the batcher's
  count of rows (Metrics.observe_batch; the server calls it once per model call, counted here
  once per request). The "off" blocks replay the same messages without the Recorder.
- The access log's writer: its drain of those lines (serving/access_log.py's Deferred, with the
  server's BufferedLogHandler and line format, into a file), run on this thread after every
  `DRAIN_LINES` lines (fewer than the server's drains hold at the rates the table shows, so a
  drain's fixed cost is not spread thinner than there) and timed per line. In the server it
  is a thread of its own, but it holds the interpreter lock the requests need: its CPU counts.
- gRPC (serving/grpc_server.py, the `finally` of `_guarded`): Metrics.observe with the
  arguments that call site passes, and observe_batch; gRPC writes no access line. "Off" is the
  same loop without them (the call site's `if metrics is not None` is there either way).

`time.thread_time` counts this thread's CPU only (not another thread's, not a sleep). On and
off blocks alternate, their order too; each pair of blocks gives one cost per request (on
minus off, plus the writer's per line), and the blocks' median comes with
benchmarks/paired.py's order-statistic interval.

The comparison at c concurrent clients: all of this is Python holding the server process's one
interpreter lock, so it never runs beside the server's other Python work, however many cores
there are. Each of the c clients sends its next request when its last is answered, so the mean
latency is c / throughput (Little's law), and p50 is close to it (the latencies are close
together). Adding t of such serial work per request lowers the throughput from X to no less
than 1 / (1/X + t), which adds at most c·t to that latency: c·t over the p50 measured at c
clients is the share held against the 5% (the off server's p50 of part 3 when it ran, else part
2's server's, which has them on). Work that ran in parallel on two cores would add only
c·t / min(c, cores); the lock rules that out for this work, so c·t is the bound, and at 1 client
it is t (the Recorder's share comes after the answer is sent, so the client waits for less). What
this does not see: what the extra work does to the caches and the scheduling of the rest of the
request; the end-to-end rows show those, within their noise.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pathlib
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from benchmarks import harness, paired
from benchmarks.serving_clients import INSTANCE
from benchmarks.serving_report import GRPC, REST
from common.config import setting

DRAIN_LINES = 50
TARGET_PERCENT = 5.0
OFF = "metrics and access log off"  # part 3's rows (benchmarks/serving_overhead.py)
Block = Callable[[int], Tuple[float, float]]  # requests -> CPU seconds (caller's, writer's)


@dataclasses.dataclass(frozen=True)
class Captured:
    """A :predict as the server's outermost middleware sees it, and the app's metrics."""

    scope: Dict[str, Any]
    messages: Tuple[Dict[str, Any], ...]  # what the app sent: the response's start and body
    version: str
    metrics: Any  # serving.metrics.Metrics


def capture(model_dir: str, model_name: str, rows: int, timeout: float = 120.0) -> Captured:
    """Serves `model_dir` with create_app (metrics on) in this process and sends it one
    :predict of `rows` copies of the benchmark's row; keeps what the Recorder saw."""
    from starlette.testclient import TestClient

    from serving import ui
    from serving.app import create_app
    from serving.settings import ModelConfig

    app = create_app(ModelConfig(model_dir=model_dir, model_name=model_name),
                     poll_seconds=3600.0, access_log=False, manage_heap=False)
    path = f"/v1/models/{model_name}:predict"
    seen: List[Dict[str, Any]] = []
    sent: List[Dict[str, Any]] = []

    async def capturing(scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != path:
            await app(scope, receive, send)
            return
        seen.append(dict(scope))  # as it came in: the router adds to it

        async def noted(message: Dict[str, Any]) -> None:
            sent.append(message)
            await send(message)
        await app(scope, receive, noted)

    with TestClient(capturing) as client:
        deadline = time.monotonic() + timeout
        while client.get("/healthz").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no version of {model_dir} loaded within {timeout:.0f} s")
            time.sleep(0.1)
        answer = client.post(path, json={"instances": [INSTANCE] * rows})
    if answer.status_code != 200 or len(answer.json()["predictions"]) != rows:
        raise RuntimeError(f"the in-process server answered {answer.status_code}: "
                           f"{answer.text[:200]}")
    return Captured(seen[-1], tuple(sent), answer.headers[ui.VERSION_HEADER],
                    app.state.context.metrics)


def _drive(coroutine: Any) -> None:
    """Runs a coroutine that never waits to its end, without an event loop."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a replayed request waited for something")


async def _receive() -> Dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(_: Dict[str, Any]) -> None:
    return None


@contextlib.contextmanager
def _access_log(path: pathlib.Path) -> Iterator[Any]:
    """The server's access log (serving/server.py's buffer_access_log) writing to `path`,
    its lines queued on a Deferred that this thread drains."""
    from common import logs
    from serving import access_log
    from serving.server import BufferedLogHandler

    with open(path, "wb") as file:
        handler = BufferedLogHandler(file.fileno())  # its own copy of the descriptor
    handler.setFormatter(access_log.stamp_once(logging.Formatter(logs.FORMAT,
                                                                 logs.DATE_FORMAT)))
    deferred = access_log.Deferred(handler)
    logger = access_log.ACCESS_LOGGER
    level = logger.level
    logger.setLevel(logging.INFO)  # as the server's logging setup has it
    try:
        with deferred.queued_here():
            yield deferred
    finally:
        logger.setLevel(level)
        deferred.drain()
        handler.stream.close()
        handler.close()


def _rest_blocks(captured: Captured, deferred: Any, rows: int) -> Tuple[Block, Block]:
    """(on, off): `count` requests through the Recorder, the access log drained every
    DRAIN_LINES; and the same replay without it."""
    from serving import ui
    from serving.recorder import Recorder

    messages, scope, metrics = captured.messages, captured.scope, captured.metrics

    async def app(_: Any, receive: Any, send: Any) -> None:
        for message in messages:
            await send(message)

    recorder = Recorder(app, metrics, True, ui.VERSION_HEADER)

    def on(count: int) -> Tuple[float, float]:
        caller = writer = 0.0
        for start in range(0, count, DRAIN_LINES):
            begun = time.thread_time()
            for _ in range(min(DRAIN_LINES, count - start)):
                _drive(recorder(scope, _receive, _send))
                metrics.observe_batch(rows)
            drained = time.thread_time()
            deferred.drain()
            caller += drained - begun
            writer += time.thread_time() - drained
        return caller, writer

    def off(count: int) -> Tuple[float, float]:
        caller = 0.0
        for start in range(0, count, DRAIN_LINES):
            begun = time.thread_time()
            for _ in range(min(DRAIN_LINES, count - start)):
                _drive(app(scope, _receive, _send))
            caller += time.thread_time() - begun
        return caller, 0.0

    return on, off


def _grpc_blocks(captured: Captured, rows: int) -> Tuple[Block, Block]:
    """(on, off): what `_guarded` adds with metrics on, `count` times; the bare loop."""
    metrics, version = captured.metrics, captured.version

    def on(count: int) -> Tuple[float, float]:
        begun, started = time.thread_time(), time.perf_counter()
        for _ in range(count):
            metrics.observe("predict", "grpc", "OK", version, time.perf_counter() - started)
            metrics.observe_batch(rows)
        return time.thread_time() - begun, 0.0

    def off(count: int) -> Tuple[float, float]:
        begun = time.thread_time()
        for _ in range(count):
            pass
        return time.thread_time() - begun, 0.0

    return on, off


def _summary(protocol: str, caller: List[float], writer: List[float],
             requests: int) -> Dict[str, Any]:
    """Each block's µs per request (caller's, writer's, both) and their medians and intervals."""
    totals = [c + w for c, w in zip(caller, writer)]
    found: Dict[str, Any] = {"setup": f"{protocol}, recording measured in process",
                             "protocol": protocol, "blocks": len(totals),
                             "requests": requests * len(totals), "block_caller_us": caller,
                             "block_writer_us": writer, "block_total_us": totals}
    for key, values in (("caller", caller), ("writer", writer), ("total", totals)):
        low, high, found["coverage"] = paired.median_interval(values)
        found[f"{key}_us"] = statistics.median(values)
        found[f"{key}_interval_us"] = (low, high)
    return found


def measure(model_dir: str, model_name: str, rows: int = 1, blocks: int = 21,
            requests: int = 1000) -> List[Dict[str, Any]]:
    """REST's and gRPC's recording cost per request over `blocks` pairs of on and off blocks
    of `requests` requests each (after one untimed pair); with the access lines written and
    the requests the metrics counted, which say the real recording ran."""
    captured = capture(model_dir, model_name, rows)
    costs: Dict[str, Tuple[List[float], List[float]]] = {REST: ([], []), GRPC: ([], [])}
    with tempfile.TemporaryDirectory() as work:
        log_path = pathlib.Path(work) / "access.log"
        with _access_log(log_path) as deferred:
            plans = {REST: _rest_blocks(captured, deferred, rows),
                     GRPC: _grpc_blocks(captured, rows)}
            for number in range(-1, blocks):  # -1: the warm-up
                for protocol, (on, off) in plans.items():
                    timed = {}
                    for name, block in (("on", on), ("off", off))[::1 if number % 2 else -1]:
                        timed[name] = block(requests)
                    if number >= 0:
                        caller, writer = costs[protocol]
                        caller.append((timed["on"][0] - timed["off"][0]) / requests * 1e6)
                        writer.append(timed["on"][1] / requests * 1e6)
        lines = log_path.read_text().splitlines()
    path = captured.scope["path"]
    counted = captured.metrics.requests.counts
    found = [_summary(protocol, *costs[protocol], requests) for protocol in (REST, GRPC)]
    found[0]["lines_written"] = sum(line.endswith(" ms") and f" POST {path} 200 " in line
                                    for line in lines)
    for cost, key in zip(found, [(captured.version, "predict", "rest", "200"),
                                 (captured.version, "predict", "grpc", "OK")]):
        cost["requests_counted"] = counted[key].value if key in counted else 0
    return found


def table(costs: Sequence[Dict[str, Any]]) -> str:
    def cell(cost: Dict[str, Any], key: str) -> str:
        if not any(cost[f"block_{key}_us"]):
            return "none"  # gRPC writes no access line
        low, high = cost[f"{key}_interval_us"]
        return f"{cost[f'{key}_us']:.2f} ({low:.2f} to {high:.2f})"

    headers = ["recording, measured in process", "blocks", "requests",
               "request's thread, µs per request", "access log's writer, µs per line",
               "both, µs per request"]
    return harness.markdown_table(headers, [
        [c["protocol"], c["blocks"], c["requests"], cell(c, "caller"), cell(c, "writer"),
         cell(c, "total")] for c in costs])


def verdicts(costs: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]],
             source: str = "this run") -> List[str]:
    """Per protocol and level with an end-to-end p50: clients x cost over that p50, each
    block's, against the target (the module docstring says why clients x cost)."""
    by = {(r["setup"], r["clients"]): r for r in records}
    found = []
    for cost in costs:
        protocol = cost["protocol"]
        levels = sorted({count for setup, count in by if setup in (protocol,
                                                                   f"{protocol}, {OFF}")})
        for clients in levels:
            row, whose = by.get((f"{protocol}, {OFF}", clients)), "the off server's"
            if row is None:
                row, whose = by[(protocol, clients)], "the server's (on)"
            shares = [clients * t / 1e3 / row["p50_ms"] * 100 for t in cost["block_total_us"]]
            found.append(
                f"- {protocol} at {clients} client(s), the recording's CPU measured in process:"
                f" {clients} x {cost['total_us']:.2f} µs = {clients * cost['total_us'] / 1e3:.3f}"
                f" ms, against {whose} p50 of {row['p50_ms']:.2f} ms ({source}): "
                f"{paired.verdict(shares, TARGET_PERCENT, 'blocks')}")
    return found


def text(costs: Sequence[Dict[str, Any]], records: Sequence[Dict[str, Any]],
         source: str = "this run") -> List[str]:
    """The part's lines under the benchmark's table: its own table, then the verdicts."""
    if not costs:
        return []
    blocks, requests = costs[0]["blocks"], costs[0]["requests"] // costs[0]["blocks"]
    return ["", f"What recording costs per request, measured in this process (CPU time, the "
            f"medians of {blocks} pairs of on and off blocks of {requests} requests, with their "
            f"{costs[0]['coverage']:.0%} interval; benchmarks/serving_record_cost.py):", "",
            table(costs), "", *verdicts(costs, records, source)]


@dataclasses.dataclass(frozen=True)
class RecordCostConfig(harness.ServedModel):
    """This part alone; its verdicts against the p50s the last full run wrote."""

    record_blocks: int = setting(
        21, "Pairs of on and off blocks of the in-process measurement of what recording "
        "costs per request (0 = skip it in benchmarks.serving).")
    record_requests: int = setting(1000, "Requests per block of it.")


def _last_run() -> Tuple[List[Dict[str, Any]], str]:
    """The end-to-end rows in benchmarks/results/serving.json, and where they came from."""
    path = harness.RESULTS_DIR / "serving.json"
    if not path.exists():
        return [], ""
    written = json.loads(path.read_text())
    rows = [r for r in written["results"] if "p50_ms" in r]
    return rows, f"from {path.relative_to(harness.README.parent)}, measured {written['date']}"


def main(argv: Optional[List[str]] = None) -> int:
    args, output = harness.parse("serving_record_cost", __doc__, argv, RecordCostConfig)
    if output.write:
        print("This part alone prints only: benchmarks.serving writes it, beside the p50s of "
              "the same run. Pass --no-write.", file=sys.stderr)
        return 2
    from serving.settings import ModelConfig

    try:
        args.newest_version()
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 1
    costs = measure(args.model_dir, ModelConfig().model_name,
                    blocks=max(1, args.record_blocks), requests=max(1, args.record_requests))
    records, source = _last_run()
    print("\n".join(text(costs, records, source)).strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
