"""TF Serving's model config file: parsing, each version policy and labels in the version store.

The store runs in process with a fake disk, loader and clock (no TensorFlow, no waiting); the
same config on a real server, over REST and gRPC, is in test_serving_labels.py.
"""
from __future__ import annotations

import logging
import pathlib
from typing import Any, Dict, List, Tuple

import pytest

from serving.model_config import (ALL, LATEST, SPECIFIC, ConfigError, ConfigWatcher,
                                  VersionPolicy, check_labels, parse)

MODEL = "babyweight"


def config_text(policy: str = "", labels: Dict[str, int] = (), name: str = MODEL,
                base_path: str = "/models/babyweight") -> str:
    """A ModelServerConfig as a team writes it for TF Serving."""
    label_lines = "".join(f"    version_labels {{ key: '{k}' value: {v} }}\n"
                          for k, v in dict(labels).items())
    return (f"model_config_list {{\n  config {{\n    name: '{name}'\n"
            f"    base_path: '{base_path}'\n    model_platform: 'tensorflow'\n"
            f"    {policy}\n{label_lines}  }}\n}}\n")


@pytest.mark.parametrize("policy,kind,count,versions", [
    ("", LATEST, 1, frozenset()),
    ("model_version_policy { latest { num_versions: 2 } }", LATEST, 2, frozenset()),
    ("model_version_policy { latest { } }", LATEST, 1, frozenset()),
    ("model_version_policy { all { } }", ALL, 1, frozenset()),
    ("model_version_policy { specific { versions: 1 versions: 3 } }", SPECIFIC, 1,
     frozenset({1, 3})),
])
def test_policies_parse_from_tf_servings_text_format(policy: str, kind: str, count: int,
                                                     versions: frozenset) -> None:
    found = parse(config_text(policy, {"stable": 1, "canary": 3}), "models.config")
    assert (found.name, found.base_path) == (MODEL, "/models/babyweight")
    assert (found.policy.kind, found.policy.num_versions, found.policy.versions) == (
        kind, count, versions)
    assert found.policy.label_map == {"stable": 1, "canary": 3}


@pytest.mark.parametrize("text,words", [
    ("model_config_list { config { name: 'babyweight' base_path: '/m' } ", ["text format"]),
    ("model_config_list { config { name: 'babyweight' bas_path: '/m' } }",
     ["text format", "bas_path"]),
    ("", ["model_config_list"]),
    (config_text().replace("  }\n}", "  }\n  config { name: 'other' base_path: '/o' }\n}"),
     ["lists 2 models", "exactly one"]),
    (config_text(name=""), ["no name"]),
    (config_text(base_path=""), ["no base_path"]),
    (config_text().replace("'tensorflow'", "'pytorch'"), ["model_platform", "pytorch"]),
    (config_text("model_version_policy { specific { } }"), ["specific", "no versions"]),
    (config_text("model_version_policy { latest { num_versions: -1 } }"), ["out of range: -1"]),
    (config_text(labels={"a/b": 1}), ["'a/b'", "REST path"]),
], ids=["unclosed", "unknown field", "empty", "two models", "no name", "no base_path",
        "platform", "specific empty", "negative", "label with slash"])
def test_a_bad_file_is_refused_naming_the_problem(text: str, words: List[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        parse(text, "models.config")
    assert str(raised.value).startswith("models.config")
    for word in words:
        assert word in str(raised.value)


def test_at_start_a_label_must_point_at_a_version_the_policy_serves() -> None:
    found = parse(config_text("model_version_policy { latest { num_versions: 1 } }",
                              {"stable": 1}), "models.config")
    with pytest.raises(ConfigError, match="Request to assign label to version 1 of model "
                       "babyweight, which is not currently available for inference"):
        check_labels(found, [1, 2])
    check_labels(parse(config_text("model_version_policy { all { } }", {"stable": 1}),
                       "m"), [1, 2])
    check_labels(parse(config_text(labels={"stable": 7}), "m", allow_unavailable_labels=True),
                 [1, 2])


# ------------------------------------------------------------------------------------------------
# The version store under each policy, with a fake disk, loader and clock
# ------------------------------------------------------------------------------------------------

class _Fake:
    def __init__(self, versions: List[int]) -> None:
        self.dirs: Dict[int, str] = {v: f"m/{v}" for v in versions}
        self.broken: set = set()
        self.loads: List[int] = []
        self.now = 0.0

    def list_dirs(self, _: str) -> Tuple[Dict[int, str], List[str]]:
        return dict(self.dirs), []

    def load(self, version: int, path: str) -> Any:
        from serving.model_store import ServedModel

        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"{path}: half copied")
        return ServedModel(version, path, None, {}, {}, 0.0)


def _store(fake: _Fake, policy: VersionPolicy) -> Any:
    from serving.version_manager import ModelStore, RetryPolicy

    return ModelStore("m", RetryPolicy(1, 60.0), load=fake.load, list_dirs=fake.list_dirs,
                      clock=lambda: fake.now, manage_heap=False, policy=policy,
                      model_name=MODEL)


def _serving(store: Any) -> List[int]:
    return sorted(store.serving.versions)


def test_latest_n_serves_the_n_newest_that_load() -> None:
    fake = _Fake([1, 2, 3, 4])
    fake.broken = {4}
    store = _store(fake, VersionPolicy(LATEST, 2))
    store.refresh()
    assert _serving(store) == [2, 3] and store.current.version == 3
    fake.dirs[5] = "m/5"
    store.refresh()
    assert _serving(store) == [3, 5]
    assert [(s.version, s.state) for s in store.statuses()][:2] == [(5, "AVAILABLE"),
                                                                   (3, "AVAILABLE")]
    assert store.release_retired() == 0  # version 2 had no request: released at once


def test_all_and_specific_serve_what_they_name() -> None:
    fake = _Fake([1, 2, 3])
    store = _store(fake, VersionPolicy(ALL))
    store.refresh()
    assert _serving(store) == [1, 2, 3]
    store.set_policy(VersionPolicy(SPECIFIC, versions=frozenset({1, 3, 9})))
    store.refresh()
    assert _serving(store) == [1, 3]  # 9 is not on disk
    assert store.acquire(2) is None and store.acquire(1).version == 1
    assert store.acquire().version == 3  # no version asked: the newest serving


def test_a_specific_version_that_fails_keeps_the_old_one_serving() -> None:
    """TF Serving's availability-preserving policy: no gap while the wanted one is broken."""
    fake = _Fake([1, 2])
    store = _store(fake, VersionPolicy(SPECIFIC, versions=frozenset({1})))
    store.refresh()
    fake.broken = {2}
    store.set_policy(VersionPolicy(SPECIFIC, versions=frozenset({2})))
    store.refresh()
    assert _serving(store) == [1]
    fake.broken = set()
    fake.now += 60.0
    store.refresh()
    assert _serving(store) == [2]


def test_labels_point_only_at_serving_versions(caplog: pytest.LogCaptureFixture) -> None:
    fake = _Fake([1, 2])
    policy = VersionPolicy(SPECIFIC, versions=frozenset({1, 2}),
                           labels=(("canary", 2), ("stable", 1)))
    store = _store(fake, policy)
    store.refresh()
    assert dict(store.serving.labels) == {"canary": 2, "stable": 1}
    with caplog.at_level(logging.ERROR, "babyweight.serving"):
        store.set_policy(VersionPolicy(SPECIFIC, versions=frozenset({1, 2}),
                                       labels=(("canary", 3), ("stable", 1))))
        store.refresh()
        store.refresh()
    refused = [r.getMessage() for r in caplog.records if "assign label" in r.getMessage()]
    assert len(refused) == 1  # logged once, not at every poll
    assert "version 3 of model babyweight, which is not currently available" in refused[0]
    assert dict(store.serving.labels) == {"canary": 2, "stable": 1}  # the old labels stay
    fake.dirs[3] = "m/3"
    store.set_policy(VersionPolicy(ALL, labels=(("canary", 3), ("stable", 1))))
    store.refresh()
    assert dict(store.serving.labels) == {"canary": 3, "stable": 1}


def test_allowed_a_new_label_may_wait_but_an_existing_one_may_not_move() -> None:
    fake = _Fake([1])
    store = _store(fake, VersionPolicy(labels=(("stable", 1), ("next", 5)),
                                       allow_unavailable_labels=True))
    store.refresh()
    assert dict(store.serving.labels) == {"stable": 1, "next": 5}
    store.set_policy(VersionPolicy(labels=(("stable", 6), ("next", 5)),
                                   allow_unavailable_labels=True))
    store.refresh()
    assert dict(store.serving.labels) == {"stable": 1, "next": 5}


def test_the_watcher_applies_a_changed_file_and_keeps_the_old_on_a_bad_one(
        tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "models.config"
    path.write_text(config_text(labels={"stable": 1}))
    now = [0.0]
    watcher = ConfigWatcher(str(path), parse(path.read_text(), str(path)), 5.0, lambda: now[0])
    assert watcher.poll() is None  # not due
    now[0] += 5.0
    assert watcher.poll() is None  # due, unchanged
    path.write_text(config_text("model_version_policy { all { } }", {"stable": 2}))
    now[0] += 5.0
    assert watcher.poll() == VersionPolicy(ALL, labels=(("stable", 2),))
    with caplog.at_level(logging.ERROR, "babyweight.serving"):
        for bad in ("model_config_list { config { name: 'x'", config_text(name="other")):
            path.write_text(bad)
            for _ in range(3):
                now[0] += 5.0
                assert watcher.poll() is None
    # Only the watcher's errors: its info line on the good change shows too when an earlier test
    # in this process set the babyweight loggers to INFO.
    messages = [r.getMessage() for r in caplog.records if r.module == "model_config"
                and r.levelno >= logging.ERROR]
    assert len(messages) == 2 and all("previous config stays" in m for m in messages)
    assert "text format" in messages[0] and "needs a restart" in messages[1]


def test_labelled_paths_are_counted_under_their_api() -> None:
    from serving.metrics import rest_api

    base = f"/v1/models/{MODEL}/labels/stable"
    assert [rest_api("POST", f"{base}:predict"), rest_api("GET", f"{base}/metadata"),
            rest_api("GET", base)] == ["predict", "metadata", "status"]
