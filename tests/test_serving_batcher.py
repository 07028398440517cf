"""The batcher on its own (no TensorFlow): slicing, grouping by model, errors, the timeout."""
from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Dict, List

import numpy as np
import pytest


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


class _RefusingModel(_FakeModel):
    """Refuses any call holding a negative x, as the exported graph refuses a value it was not
    trained with; its first call waits for `gate`, so the rest queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def predict(self, signature: str, columns: Dict[str, List[float]]) -> Dict[str, np.ndarray]:
        if not self.calls:
            assert self.gate.wait(60)
        if min(columns["x"]) < 0:
            self.calls.append(len(columns["x"]))
            raise ValueError("x must not be negative")
        return super().predict(signature, columns)


def test_a_request_the_model_refuses_fails_alone_not_the_requests_it_was_batched_with() -> None:
    from serving.batching import Batcher

    model, batcher = _RefusingModel(), Batcher(max_batch_rows=64)
    values = [[1.0], [2.0], [-3.0], [4.0, 5.0], [6.0]]

    async def run() -> List[Any]:
        tasks = [asyncio.ensure_future(batcher.predict(model, "sig", {"x": v}, len(v)))
                 for v in values]
        while batcher.queued() < len(values) - 1:  # all but the first, behind its call
            await asyncio.sleep(0.001)
        model.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(run())
    assert model.calls[:2] == [1, 5], "the four queued requests shared a call, which failed"
    for given, answer in zip(values, answers):
        if min(given) < 0:
            assert isinstance(answer, ValueError)
        else:
            assert answer["y"].tolist() == [2 * v for v in given]
    assert sorted(model.calls[2:]) == [1, 1, 1, 2], "then each was called alone"
    batcher.close()


class _ManualClock:
    """A clock that moves only when the test moves it: the batcher's timer fires after the
    arrivals the test staged, however slowly a loaded machine runs them."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_batcher_timeout_gathers_requests_into_one_call() -> None:
    from serving.batching import Batcher

    model = _FakeModel()
    clock = _ManualClock()
    batcher = Batcher(timeout_s=0.05, clock=clock)

    async def staggered() -> None:
        requests = []
        for value in range(4):  # one arrival every 5 ms of the batcher's clock
            requests.append(asyncio.ensure_future(
                batcher.predict(model, "sig", {"x": [float(value)]}, 1)))
            await asyncio.sleep(0)  # the request is queued
            clock.now += 0.005
        assert model.calls == [], "the forming batch was not held open"
        clock.now += 0.05  # past the first arrival's timeout
        await asyncio.gather(*requests)

    try:
        asyncio.run(staggered())
    finally:
        batcher.close()
    assert model.calls == [4]


class _GatedModel(_FakeModel):
    """Holds its first call until the test opens the gate, so others queue behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered, self.gate = threading.Event(), threading.Event()
        self.threads: List[int] = []

    def predict(self, signature: str, columns: Dict[str, List[float]]) -> Dict[str, np.ndarray]:
        self.threads.append(threading.get_ident())
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return super().predict(signature, columns)


def test_a_lone_predict_now_runs_in_its_own_thread() -> None:
    from serving.batching import Batcher

    model = _GatedModel()
    model.gate.set()
    batcher = Batcher()
    told: List[int] = []
    batcher.on_call = told.append
    assert batcher.predict_now(model, "sig", {"x": [1.0, 2.0]}, 2)["y"].tolist() == [2, 4]
    assert model.threads == [threading.get_ident()]  # no hand-off to a model thread
    assert (batcher.stats()["model_calls"], batcher.stats()["rows"], told) == (1, 2, [2])
    broken = _FakeModel(fail=True)
    with pytest.raises(ValueError, match="model broke"):  # the model's own error, raised here
        batcher.predict_now(broken, "sig", {"x": [1.0]}, 1)
    assert batcher.predict_now(model, "sig", {"x": [3.0]}, 1)["y"].tolist() == [6]
    batcher.close()


def _hold_model(batcher: Any, model: "_GatedModel") -> threading.Thread:
    """A thread whose predict_now call takes the model's one slot until the gate opens."""
    busy = threading.Thread(target=batcher.predict_now, args=(model, "sig", {"x": [0.0]}, 1))
    busy.start()
    assert model.entered.wait(60)
    return busy


def test_predict_now_calls_only_a_free_model_and_never_waits() -> None:
    """In the caller's thread when the request would start a call alone; None, without a
    call or a queue entry, while another call holds the model (gRPC's loop must not wait)."""
    from serving.batching import Batcher

    model = _GatedModel()
    batcher = Batcher()
    busy = _hold_model(batcher, model)
    assert batcher.predict_now(model, "sig", {"x": [2.0]}, 1) is None
    assert batcher.queued() == 0 and batcher.stats()["model_calls"] == 1
    model.gate.set()
    busy.join(60)
    assert batcher.predict_now(model, "sig", {"x": [3.0]}, 1)["y"].tolist() == [6]
    assert model.threads[-1] == threading.get_ident()
    assert batcher.stats()["model_calls"] == 2
    held = Batcher(timeout_s=60.0)  # a batch held open for more rows: not made at once
    assert held.predict_now(model, "sig", {"x": [4.0]}, 1) is None
    held.close()
    batcher.close()


def test_requests_queued_behind_a_predict_now_call_share_the_next_call() -> None:
    """The call predict_now makes holds the model; what queues meanwhile is started when it
    ends, in one call of the batcher's threads."""
    from serving.batching import Batcher

    model = _GatedModel()
    batcher = Batcher()
    busy = _hold_model(batcher, model)

    async def queued() -> List[Any]:
        calls = [asyncio.ensure_future(batcher.predict(model, "sig", {"x": [float(v)]}, 1))
                 for v in (1, 2, 3, 4, 5)]
        while batcher.queued() < 5:
            await asyncio.sleep(0.001)  # until all five are queued behind the held call
        model.gate.set()
        return await asyncio.gather(*calls)

    answers = asyncio.run(queued())
    busy.join(60)
    assert [a["y"].tolist() for a in answers] == [[2.0 * v] for v in (1, 2, 3, 4, 5)]
    assert model.calls == [1, 5]  # the five queued requests shared one call
    assert model.threads[1] != model.threads[0]  # started by the batcher, not the caller
    batcher.close()


def test_close_answers_queued_requests() -> None:
    from serving.batching import Batcher

    model = _GatedModel()
    batcher = Batcher()
    busy = _hold_model(batcher, model)

    async def queued_then_closed() -> BaseException:
        call = asyncio.ensure_future(batcher.predict(model, "sig", {"x": [1.0]}, 1))
        while batcher.queued() < 1:
            await asyncio.sleep(0.001)
        batcher.close()
        try:
            await asyncio.wait_for(call, 60)
        except BaseException as error:  # noqa: BLE001 - the test looks at it
            return error
        raise AssertionError("the queued request was answered after close")

    assert isinstance(asyncio.run(queued_then_closed()), asyncio.CancelledError)
    model.gate.set()
    busy.join(60)
    assert model.calls == [1]  # the running call still finished; the queued one never ran
