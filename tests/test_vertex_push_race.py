"""Two Vertex AI runs pushing into one GCS serving directory at once (pipelines/vertex_push.py).

Both list the directory before either writes, so both choose the same version number: the one
whose claim fails takes the next number, and no push removes a directory it did not create.
The GCS serving directory is a local path behind the stand-in /gcs/ mount.
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import threading
import time
from typing import Any, Dict

import pytest

from pipelines import atomic_push, vertex_push, vertex_serving
from tests.test_vertex_serving import (  # noqa: F401  (run_artifacts is a fixture)
    FakeAiplatform, push_inputs, push_settings, run_artifacts)

WAIT_S = 300.0  # only a hung push waits this long


def _settings(run_artifacts: Dict[str, Any], run_name: str) -> vertex_push.PushSettings:
    base = push_settings(run_artifacts, "gcs")
    reports = pathlib.Path(base.report_path).parent.parent / run_name
    return dataclasses.replace(
        base, run_name=run_name, report_path=str(reports / pathlib.Path(base.report_path).name),
        pushed_uri=f"{base.pushed_uri.rsplit('/', 1)[0]}/{run_name}")


def _older_version(serving: pathlib.Path) -> int:
    """A version of another model, numbered ahead of the clock: both runs choose the number
    after it, whichever second they list the directory in."""
    ahead = int(time.time()) + 10_000
    (serving / str(ahead)).mkdir(parents=True)
    (serving / str(ahead) / atomic_push.PUSH_RECORD).write_text(json.dumps(
        {"version": ahead, "model_digest": "sha256:another-model", "pushed": True}))
    return ahead


def test_two_runs_choosing_one_version_push_two_complete_versions(run_artifacts, monkeypatch):
    fake = FakeAiplatform(monkeypatch, endpoint_exists=True)
    settings = {name: _settings(run_artifacts, name) for name in ("run-a", "run-b")}
    serving = vertex_serving.mounted(settings["run-a"].serving_dir)
    older = _older_version(serving)

    listed: Dict[str, int] = {}
    both_listed = threading.Barrier(2, timeout=WAIT_S)
    a_done = threading.Event()
    next_version = vertex_push._next_version

    def racing_listing(push_settings_: vertex_push.PushSettings) -> int:
        """The first listing of each run waits for the other's; run B then waits for run A's
        whole push before it writes anything."""
        version = next_version(push_settings_)
        if push_settings_.run_name not in listed:
            listed[push_settings_.run_name] = version
            both_listed.wait()
            if push_settings_.run_name == "run-b":
                assert a_done.wait(WAIT_S), "run A's push did not finish"
        return version

    monkeypatch.setattr(vertex_push, "_next_version", racing_listing)
    decisions: Dict[str, Any] = {}
    errors: Dict[str, str] = {}

    def run(name: str) -> None:
        try:
            decisions[name] = vertex_push.push(push_inputs(run_artifacts), settings[name])
        except BaseException as error:  # reported below, in the test's thread
            errors[name] = f"{type(error).__name__}: {error}"
        finally:
            if name == "run-a":
                a_done.set()

    threads = [threading.Thread(target=run, args=(name,)) for name in settings]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT_S)
    assert not any(thread.is_alive() for thread in threads)

    assert listed == {"run-a": older + 1, "run-b": older + 1}  # the race did happen
    assert errors == {}
    assert {name: d["version"] for name, d in decisions.items()} == \
        {"run-a": older + 1, "run-b": older + 2}
    assert sorted(p.name for p in serving.iterdir()) == [str(older), str(older + 1),
                                                           str(older + 2)]
    source = vertex_serving.mounted(push_inputs(run_artifacts).serving_model_uri)
    for name, decision in decisions.items():
        directory = serving / str(decision["version"])
        assert decision["pushed"] is True
        assert (directory / vertex_push.GRAPH_FILE).read_bytes() == \
            (source / vertex_push.GRAPH_FILE).read_bytes()
        record = json.loads((directory / vertex_push.PUSH_RECORD).read_text())
        assert (record["run_name"], record["version"]) == (name, decision["version"])
        assert json.loads(pathlib.Path(settings[name].report_path).read_text()) == decision
    assert [p.name for p in (serving / str(older)).iterdir()] == [atomic_push.PUSH_RECORD]
    assert fake.calls == []


def _both(tmp_path: pathlib.Path, monkeypatch) -> vertex_push.PushSettings:
    monkeypatch.setenv(vertex_serving.GCS_MOUNT_ENV, str(tmp_path))
    return vertex_push.PushSettings(
        push_to="both", serving_dir="gs://b/babyweight/serving", pushed_uri="gs://b/pushed/7",
        deployment={}, run_name="r", pipeline_name="babyweight", trainer={}, report_path="x")


def test_a_number_taken_in_one_target_is_given_up_in_every_target(tmp_path, monkeypatch):
    """A version directory another attempt left in the run's own PushedModel directory: the
    push takes the next number in both targets, and leaves that directory as it was."""
    settings = _both(tmp_path, monkeypatch)
    serving = tmp_path / "b" / "babyweight" / "serving"
    older = _older_version(serving)
    left = tmp_path / "b" / "pushed" / "7" / str(older + 1)
    left.mkdir(parents=True)
    (left / "kept").write_text("another attempt's file")

    version, targets, directories = vertex_push.claim_version(settings)
    assert version == older + 2
    assert targets == {vertex_push.ENDPOINT: f"gs://b/pushed/7/{older + 2}",
                       vertex_push.GCS: f"gs://b/babyweight/serving/{older + 2}"}
    assert all(d.is_dir() and not list(d.iterdir()) for d in directories)
    assert sorted(p.name for p in serving.iterdir()) == [str(older), str(older + 2)]
    assert (left / "kept").read_text() == "another attempt's file"


def test_a_push_that_finds_every_number_taken_fails_changing_nothing(tmp_path, monkeypatch):
    settings = _both(tmp_path, monkeypatch)
    serving = tmp_path / "b" / "babyweight" / "serving"
    older = _older_version(serving)
    monkeypatch.setattr(vertex_push, "CLAIM_ATTEMPTS", 3)
    taken = [tmp_path / "b" / "pushed" / "7" / str(older + n) for n in (1, 2, 3)]
    for directory in taken:
        directory.mkdir(parents=True)

    with pytest.raises(atomic_push.PushError, match="took 3 version numbers in a row") as error:
        vertex_push.claim_version(settings)
    assert "\n" not in str(error.value) and "nothing was pushed" in str(error.value)
    assert [p.name for p in serving.iterdir()] == [str(older)]
    assert all(d.is_dir() and not list(d.iterdir()) for d in taken)
