"""The batcher on its own (no TensorFlow): slicing, grouping by model, errors, the timeout."""
from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List

import numpy as np

class _FakeModel:
    """Doubles `x`; records the size of every call."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: List[int] = []
        self.fail = fail

    def predict(self, signature: str, columns: Dict[str, List[float]]) -> Dict[str, np.ndarray]:
        time.sleep(0.005)  # long enough for requests to queue behind a call
        self.calls.append(len(columns["x"]))
        if self.fail:
            raise ValueError("model broke")
        return {"y": np.asarray(columns["x"]) * 2}


def _submit_all(batcher: Any, requests: List[tuple]) -> List[Any]:
    async def run() -> List[Any]:
        return await asyncio.gather(
            *(batcher.predict(model, "sig", {"x": values}, len(values))
              for model, values in requests), return_exceptions=True)
    return asyncio.run(run())


def test_batcher_slices_answers_and_never_mixes_models() -> None:
    from serving.batching import Batcher

    first, second = _FakeModel(), _FakeModel()
    batcher = Batcher(max_batch_rows=16)
    requests = [(first if i % 3 else second, [float(i), float(i) + 0.5]) for i in range(30)]
    answers = _submit_all(batcher, requests)
    for (_, values), answer in zip(requests, answers):
        assert answer["y"].tolist() == [2 * v for v in values]
    assert sum(first.calls) + sum(second.calls) == 60
    assert len(first.calls) + len(second.calls) < 30  # shared calls
    assert max(first.calls + second.calls) <= 16
    assert batcher.stats()["rows"] == 60
    batcher.close()


def test_batcher_reports_model_errors_to_every_request_of_the_call() -> None:
    from serving.batching import Batcher

    batcher = Batcher()
    answers = _submit_all(batcher, [(_FakeModel(fail=True), [1.0])] * 3)
    assert all(isinstance(a, ValueError) for a in answers)
    batcher.close()


class _ManualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test moves it: the batcher's timer fires
    after the arrivals the test staged, however slowly a loaded machine runs them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now


def test_batcher_timeout_gathers_requests_into_one_call() -> None:
    from serving.batching import Batcher

    model = _FakeModel()
    batcher = Batcher(timeout_s=0.05)
    loop = _ManualClockLoop()

    async def staggered() -> None:
        requests = []
        for value in range(4):  # one arrival every 5 ms of the loop's clock
            requests.append(asyncio.ensure_future(
                batcher.predict(model, "sig", {"x": [float(value)]}, 1)))
            await asyncio.sleep(0)  # the request is queued
            loop.now += 0.005
        assert model.calls == [], "the forming batch was not held open"
        loop.now += 0.05  # past the first arrival's timeout
        await asyncio.gather(*requests)

    try:
        loop.run_until_complete(staggered())
    finally:
        loop.close()
        batcher.close()
    assert model.calls == [4]
    batcher.close()
