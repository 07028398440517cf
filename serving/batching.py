"""Server-side batching: concurrent requests share one model call, from any thread.

Why: a call of the SavedModel costs about the same for 1 row as for 100 (the fixed cost is
TensorFlow's dispatch), so 32 clients sending one row each are served far faster by a few big
calls than by 32 small ones. The policy adds no delay to a lone request: when the model is
free a request is called at once; while a call runs, arrivals queue, and the next call takes
all of them (up to `max_batch_rows`). `timeout_s` > 0 additionally holds a forming batch open
that long, as TF Serving's batch_timeout_micros does.

Ways in, one queue: `predict` for a coroutine on an event loop (REST, and gRPC under load),
whose model calls run in the batcher's worker threads so the loop never blocks; and
`predict_now`, which makes the call in the caller's thread only when the request would start
it alone, else returns None at once (gRPC's loop for a lone request, which then crosses no
thread, and must not wait for other requests' calls). Either way the same queue decides what
is batched with what, and at most `threads` calls run at once.

A batch only ever holds requests for the same loaded model and signature, so a request that
started on version N is answered by version N even if N+1 is switched in meanwhile. When a
shared call fails, each of its requests is called alone: one request the model's own checks
refuse gets its error, the others their answers.
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np

from serving.model_store import ServedModel
from serving.validation import Columns

Outputs = Dict[str, np.ndarray]


@dataclasses.dataclass
class _Waiter:
    """A coroutine's future and its loop (set from other threads via the loop)."""

    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[Outputs]"


@dataclasses.dataclass(eq=False)
class _Request:
    model: ServedModel
    signature: str
    columns: Columns
    rows: int
    waiter: _Waiter
    arrived: float


def _run_batch(batch: List[_Request]) -> Outputs:
    """Merges the requests' columns and calls the model."""
    first = batch[0]
    if len(batch) == 1:
        columns = first.columns
    else:
        columns = {name: list(itertools.chain.from_iterable(r.columns[name] for r in batch))
                   for name in first.columns}
    return first.model.predict(first.signature, columns)


def _settle(items: List[tuple]) -> None:
    """(On the futures' loop.) Each future's answer or error, a cancelled one left alone."""
    for future, value, error in items:
        if not future.done():
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)


def _deliver(batch: List[_Request], outputs: Optional[Outputs],
             error: Optional[BaseException]) -> None:
    """Each request's slice of the outputs (or the error), one wake-up per event loop."""
    by_loop: Dict[asyncio.AbstractEventLoop, List[tuple]] = {}
    offset = 0
    for request in batch:
        value = None
        if outputs is not None:
            value = outputs if len(batch) == 1 else {
                k: v[offset:offset + request.rows] for k, v in outputs.items()}
        offset += request.rows
        waiter = request.waiter
        by_loop.setdefault(waiter.loop, []).append((waiter.future, value, error))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


class Batcher:
    """Queues requests and runs them in as few model calls as the load allows."""

    def __init__(self, max_batch_rows: int = 1024, timeout_s: float = 0.0,
                 threads: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_rows = max(1, max_batch_rows)
        self._timeout = max(0.0, timeout_s)
        self._slots = max(1, threads)
        self._clock = clock
        self._executor = ThreadPoolExecutor(self._slots, thread_name_prefix="model")
        self._lock = threading.Condition()
        self._pending: Deque[_Request] = collections.deque()
        self._pending_rows = 0
        self._busy = 0
        self._closed = False
        self._timer: Optional[threading.Thread] = None
        self.calls = 0  # model calls made
        self.rows = 0  # rows they carried
        self.on_call: Optional[Callable[[int], None]] = None  # told each call's rows (metrics)

    async def predict(self, model: ServedModel, signature: str, columns: Columns,
                      rows: int) -> Outputs:
        """The outputs for these rows, sliced out of a shared model call (never blocks)."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Outputs]" = loop.create_future()
        self._enqueue(_Request(model, signature, columns, rows, _Waiter(loop, future),
                               self._clock()))
        return await future

    def predict_now(self, model: ServedModel, signature: str, columns: Columns,
                    rows: int) -> Optional[Outputs]:
        """The outputs of a call made at once in this thread, or None without a call when it
        would not hold these rows alone now (requests queued, no model slot free, a batch
        timeout to wait for): then `predict` queues them."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            alone = (not self._pending and self._busy < self._slots
                     and (not self._timeout or rows >= self._max_rows))
            if not alone:
                return None
            self._busy += 1
            self.calls += 1
            self.rows += rows
        try:
            if self.on_call is not None:
                self.on_call(rows)
            return model.predict(signature, columns)
        finally:
            with self._lock:
                self._busy -= 1
            self._launch_due()  # what queued meanwhile

    def _enqueue(self, request: _Request) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._pending.append(request)
            self._pending_rows += request.rows
            batches = self._due()
        for batch in batches:
            self._launch(batch)

    def _due(self) -> List[List[_Request]]:
        """(Under the lock.) The batches to start now, each holding a model slot."""
        batches = []
        while self._pending and self._busy < self._slots:
            if self._timeout and self._pending_rows < self._max_rows:
                if self._pending[0].arrived + self._timeout > self._clock():
                    self._start_timer()
                    break
            batches.append(self._take())
            self._busy += 1
        return batches

    def _take(self) -> List[_Request]:
        """The oldest request plus every queued one for the same model, up to max rows."""
        first = self._pending[0]
        batch: List[_Request] = []
        rest: Deque[_Request] = collections.deque()
        rows = 0
        while self._pending:
            request = self._pending.popleft()
            same = request.model is first.model and request.signature == first.signature
            if same and (not batch or rows + request.rows <= self._max_rows):
                batch.append(request)
                rows += request.rows
            else:
                rest.append(request)
        self._pending = rest
        self._pending_rows -= rows
        self.calls += 1
        self.rows += rows
        return batch

    def _call(self, batch: List[_Request]) -> None:
        """Runs one batch in this thread and answers its requests; frees its slot."""
        try:
            if self.on_call is not None:
                self.on_call(sum(r.rows for r in batch))
            outputs = _run_batch(batch)
        except BaseException as error:  # noqa: BLE001 - every waiter hears of it
            if len(batch) > 1 and isinstance(error, Exception):
                self._call_each(batch)  # each request's own answer, or its own error
            else:
                _deliver(batch, None, error)
        else:
            _deliver(batch, outputs, None)
        finally:
            with self._lock:
                self._busy -= 1

    def _call_each(self, batch: List[_Request]) -> None:
        """After a shared call failed: each request alone, so a request the model refuses
        (its graph's own checks) fails alone, and the others it shared the call with are
        answered rather than given its error."""
        with self._lock:
            self.calls += len(batch)
        for request in batch:
            try:
                outputs = _run_batch([request])
            except Exception as error:  # noqa: BLE001 - this request's error
                _deliver([request], None, error)
            else:
                _deliver([request], outputs, None)

    def _work(self, batch: List[_Request]) -> None:
        """A worker thread: this batch, then whatever became due meanwhile."""
        while batch:
            self._call(batch)
            with self._lock:
                batches = self._due()
            batch = batches[0] if batches else []
            for other in batches[1:]:
                self._launch(other)

    def _launch_due(self) -> None:
        with self._lock:
            batches = self._due()
        for batch in batches:
            self._launch(batch)

    def _launch(self, batch: List[_Request]) -> None:
        try:
            started = self._executor.submit(self._work, batch)
        except RuntimeError as error:  # the executor was shut down
            with self._lock:
                self._busy -= 1
            _deliver(batch, None, error)
            return
        started.add_done_callback(lambda done: self._not_run(batch, done))

    def _not_run(self, batch: List[_Request], done: "concurrent.futures.Future[None]") -> None:
        if done.cancelled():  # close() dropped it before a thread took it
            with self._lock:
                self._busy -= 1
            _deliver(batch, None, asyncio.CancelledError())

    def _start_timer(self) -> None:
        """(Under the lock.) Wakes the timer thread, started on first need."""
        if self._timer is None:
            self._timer = threading.Thread(target=self._time_batches, name="batch-timer",
                                           daemon=True)
            self._timer.start()
        self._lock.notify_all()

    def _time_batches(self) -> None:
        """Starts a held batch once its oldest request has waited `timeout_s`."""
        while True:
            with self._lock:
                while not self._closed:
                    if not (self._pending and self._busy < self._slots):
                        self._lock.wait()
                        continue
                    left = self._pending[0].arrived + self._timeout - self._clock()
                    if left <= 0:
                        break
                    self._lock.wait(min(left, self._timeout))
                if self._closed:
                    return
                batches = self._due()
            for batch in batches:
                self._launch(batch)

    def queued(self) -> int:
        """Requests waiting for a model call now."""
        with self._lock:
            return len(self._pending)

    def stats(self) -> Dict[str, Any]:
        return {"model_calls": self.calls, "rows": self.rows,
                "mean_rows_per_call": round(self.rows / self.calls, 2) if self.calls else 0.0}

    def close(self) -> None:
        """Refuses new requests; queued ones get CancelledError (none waits forever)."""
        with self._lock:
            self._closed = True
            pending, self._pending = list(self._pending), collections.deque()
            self._pending_rows = 0
            self._lock.notify_all()
        if pending:
            _deliver(pending, None, asyncio.CancelledError())
        self._executor.shutdown(wait=False, cancel_futures=True)
