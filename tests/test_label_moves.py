"""A label moving in the model config file never points at a version that no longer serves:
the store publishes versions and labels in one write, and a request resolves its label and
takes its model from one snapshot (serving/version_manager.py, serving/service.py). Real
exports (tests/tiny_exports.py's stand-ins), really loaded."""
from __future__ import annotations

import logging
import pathlib
from typing import Any, List, Tuple

import pytest

from serving.model_config import ALL, SPECIFIC, VersionPolicy
from serving.version_manager import ModelStore, Serving
from tests.serving_fixtures import MODEL_NAME, ServingModels

pytest_plugins = ("tests.serving_fixtures",)


def _specific(versions: Tuple[int, ...], **labels: int) -> VersionPolicy:
    return VersionPolicy(SPECIFIC, versions=frozenset(versions), labels=tuple(labels.items()))


class _Seen(logging.Handler):
    """What a request would read from the store at each thing the loader logs."""

    def __init__(self, store: ModelStore) -> None:
        super().__init__(logging.DEBUG)
        self.store, self.seen = store, []

    def emit(self, record: logging.LogRecord) -> None:
        serving = self.store.serving
        self.seen.append((record.getMessage(), sorted(serving.versions), dict(serving.labels)))


def _refresh_watched(store: ModelStore) -> List[Tuple[str, List[int], dict]]:
    seen = _Seen(store)
    logger = logging.getLogger("babyweight.serving")
    level = logger.level
    logger.addHandler(seen)
    logger.setLevel(logging.INFO)
    try:
        store.refresh()
    finally:
        logger.removeHandler(seen)
        logger.setLevel(level)
    return seen.seen


def _store(models: ServingModels, root: pathlib.Path, versions: Tuple[int, ...],
           policy: VersionPolicy, cls: Any = ModelStore) -> ModelStore:
    store = cls(str(models.serving_dir(root, versions)), manage_heap=False, policy=policy,
                model_name=MODEL_NAME)
    store.refresh()
    return store


def test_a_label_moves_with_its_version_in_one_step(
        stand_in_models: ServingModels, tmp_path: pathlib.Path) -> None:
    store = _store(stand_in_models, tmp_path, (1, 2), _specific((1,), stable=1))
    assert (sorted(store.serving.versions), dict(store.serving.labels)) == ([1], {"stable": 1})
    store.set_policy(_specific((2,), stable=2))
    seen = _refresh_watched(store)
    switch = [s for s in seen if s[0].startswith("Now serving version 2 (was 1)")]
    assert switch and switch[0][1:] == ([2], {"stable": 2}), seen
    for message, versions, labels in seen:  # at no step a label names a version not serving
        assert set(labels.values()) <= set(versions), (message, versions, labels)
    assert (sorted(store.serving.versions), dict(store.serving.labels)) == ([2], {"stable": 2})


def test_a_label_that_cannot_move_keeps_its_version_loaded(
        stand_in_models: ServingModels, tmp_path: pathlib.Path) -> None:
    store = _store(stand_in_models, tmp_path, (1, 2), _specific((1,), stable=1))
    (pathlib.Path(store.model_dir) / "3").mkdir()  # an empty version: it never loads
    store.set_policy(_specific((2, 3), stable=3))
    seen = _refresh_watched(store)
    assert (sorted(store.serving.versions), dict(store.serving.labels)) == ([1, 2],
                                                                            {"stable": 1})
    assert store.acquire(1).version == 1
    assert any("assign label to version 3" in message for message, _, _ in seen), seen
    assert "assign label to version 3" in store.label_problem


class _Moving(ModelStore):
    """A store whose loader publishes a new snapshot right after a request's first read."""

    snapshots: List[Serving]

    @property  # type: ignore[override]
    def serving(self) -> Serving:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    @serving.setter
    def serving(self, value: Serving) -> None:
        self.snapshots = [value]


def test_a_request_resolves_its_label_and_model_in_one_snapshot(
        stand_in_models: ServingModels, tmp_path: pathlib.Path) -> None:
    from serving.batching import Batcher
    from serving.service import Label, Service
    from serving.settings import LimitsConfig

    store = _store(stand_in_models, tmp_path, (1, 2), VersionPolicy(ALL, labels=(
        ("stable", 1),)), cls=_Moving)
    before = store.serving
    store.set_policy(_specific((2,), stable=2))
    store.refresh()
    after = store.serving
    assert dict(after.labels) == {"stable": 2} and sorted(after.versions) == [2]
    store.snapshots = [before, after]  # the request's first read sees `before`, later `after`
    service = Service(MODEL_NAME, store, Batcher(), LimitsConfig())
    served = service.acquire(MODEL_NAME, Label("stable"))
    try:
        assert served.version == 1  # `before`'s stable, from `before`: not a 404
    finally:
        store.release(served)
