"""Server-side batching: concurrent requests share one model call, run off the event loop.

Why: a call of the SavedModel costs about the same for 1 row as for 100 (the fixed cost is
TensorFlow's dispatch), so 32 clients sending one row each are served far faster by a few big
calls than by 32 small ones. The policy adds no delay to a lone request: when the model is
free a request is called at once; while a call runs, arrivals queue, and the next call takes
all of them (up to `max_batch_rows`). `timeout_s` > 0 additionally holds a forming batch open
that long, as TF Serving's batch_timeout_micros does.

A batch only ever holds requests for the same loaded model and signature, so a request that
started on version N is answered by version N even if N+1 is switched in meanwhile.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional

import numpy as np

from serving.model_store import ServedModel
from serving.validation import Columns

Outputs = Dict[str, np.ndarray]


@dataclasses.dataclass
class _Request:
    model: ServedModel
    signature: str
    columns: Columns
    rows: int
    future: "asyncio.Future[Outputs]"
    arrived: float


def _run_batch(batch: List[_Request]) -> Outputs:
    """Merges the requests' columns and calls the model (in a worker thread)."""
    first = batch[0]
    if len(batch) == 1:
        columns = first.columns
    else:
        columns = {name: list(itertools.chain.from_iterable(r.columns[name] for r in batch))
                   for name in first.columns}
    return first.model.predict(first.signature, columns)


class Batcher:
    """Queues requests and runs them in as few model calls as the load allows."""

    def __init__(self, max_batch_rows: int = 1024, timeout_s: float = 0.0,
                 threads: int = 1) -> None:
        self._max_rows = max(1, max_batch_rows)
        self._timeout = max(0.0, timeout_s)
        self._slots = max(1, threads)
        self._executor = ThreadPoolExecutor(self._slots, thread_name_prefix="model")
        self._pending: Deque[_Request] = collections.deque()
        self._pending_rows = 0
        self._busy = 0
        self._timer: Optional[asyncio.TimerHandle] = None
        self.calls = 0  # model calls made
        self.rows = 0  # rows they carried
        self.on_call: Optional[Callable[[int], None]] = None  # told each call's rows (metrics)

    async def predict(self, model: ServedModel, signature: str, columns: Columns,
                      rows: int) -> Outputs:
        """The outputs for these rows, sliced out of a shared model call."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Outputs]" = loop.create_future()
        self._pending.append(_Request(model, signature, columns, rows, future, loop.time()))
        self._pending_rows += rows
        self._dispatch(loop)
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._pending and self._busy < self._slots:
            if self._timeout and self._pending_rows < self._max_rows:
                wait = self._pending[0].arrived + self._timeout - loop.time()
                if wait > 0:
                    if self._timer is None:
                        self._timer = loop.call_later(wait, self._on_timer, loop)
                    return
            self._start(loop, self._take())

    def _on_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._dispatch(loop)

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
        return batch

    def _start(self, loop: asyncio.AbstractEventLoop, batch: List[_Request]) -> None:
        self._busy += 1
        self.calls += 1
        rows = sum(r.rows for r in batch)
        self.rows += rows
        if self.on_call is not None:
            self.on_call(rows)
        call = loop.run_in_executor(self._executor, _run_batch, batch)
        call.add_done_callback(lambda done: self._finish(loop, batch, done))

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: List[_Request],
                done: "asyncio.Future[Outputs]") -> None:
        self._busy -= 1
        try:
            error = asyncio.CancelledError() if done.cancelled() else done.exception()
            if error is None:
                outputs = done.result()
                offset = 0
                for request in batch:
                    if not request.future.done():
                        request.future.set_result(
                            outputs if len(batch) == 1 else
                            {k: v[offset:offset + request.rows] for k, v in outputs.items()})
                    offset += request.rows
            else:
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(error)
        finally:
            self._dispatch(loop)

    def stats(self) -> Dict[str, Any]:
        return {"model_calls": self.calls, "rows": self.rows,
                "mean_rows_per_call": round(self.rows / self.calls, 2) if self.calls else 0.0}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
