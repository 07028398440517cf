"""Which version is served: version names, load retries, deletion, and switches under traffic.

The state machine is checked in process with a fake loader and clock (no TensorFlow, no
waiting); the behaviour a user sees (half-copied pushes, deleted versions) on a real server,
serving tests/tiny_exports.py's stand-ins of the model (which version answers is checked here,
not what the model predicts).
"""
from __future__ import annotations

import logging
import pathlib
import shutil
from typing import Any, Callable, Dict, List, Tuple

import httpx
import pytest

from common.versions import INT64_MAX, parse_version, split_version_names
from tests.serving_fixtures import (COURSE_PAYLOAD, JSON, MODEL_NAME, RunningServer,
                                    ServingModels, Traffic, close_to, in_process_predictions,
                                    statuses, wait_for)

pytest_plugins = ("tests.serving_fixtures",)

NOT_VERSIONS = ["\u00b2", "\u2460", "\u0661", "1" * 5000, str(INT64_MAX + 1), "-1", "+1", "1.5",
                " 1", "1 ", "latest", "\uff11", "0x1", ""]


@pytest.mark.parametrize("name", NOT_VERSIONS, ids=repr)
def test_only_ascii_digits_that_fit_int64_name_a_version(name: str) -> None:
    assert parse_version(name) is None


def test_version_names() -> None:
    assert parse_version("0") == 0 and parse_version("007") == 7
    assert parse_version(str(INT64_MAX)) == INT64_MAX
    versions, ignored = split_version_names(["3/", "\u0661", ".4.incomplete", "01", "1", "x"])
    assert versions == {1: "01", 3: "3"}  # '01' and '1' are one version: the first name kept
    assert ignored == ["1", "x", "\u0661"]


# ------------------------------------------------------------------------------------------------
# The state machine, with a fake disk, loader and clock
# ------------------------------------------------------------------------------------------------

class _Fake:
    """A model directory whose versions load or fail as the test says."""

    def __init__(self) -> None:
        self.dirs: Dict[int, str] = {}
        self.broken: set = set()
        self.loads: List[int] = []
        self.now = 0.0

    def list_dirs(self, _: str) -> Tuple[Dict[int, str], List[str]]:
        return dict(self.dirs), ["\u00b2"]

    def load(self, version: int, path: str) -> Any:
        from serving.model_store import ServedModel

        self.loads.append(version)
        if version in self.broken:
            raise OSError(f"{path}/saved_model.pb: half copied")
        return ServedModel(version, path, None, {}, {}, 0.0)


def _store(fake: _Fake, retries: int = 2, interval: float = 60.0) -> Any:
    from serving.version_manager import ModelStore, RetryPolicy

    return ModelStore("models", RetryPolicy(retries, interval), load=fake.load,
                      list_dirs=fake.list_dirs, clock=lambda: fake.now, manage_heap=False)


def _states(store: Any) -> List[Tuple[int, str]]:
    return [(s.version, s.state) for s in store.statuses()]


def test_the_loader_is_paced_to_its_share_of_a_core_only_while_a_version_serves() -> None:
    import sys

    from serving.pacing import yielding_gil

    for serving, share, paced in ((True, 0.1, True), (True, 1.0, False), (False, 0.1, False)):
        with yielding_gil(serving, share):
            assert (sys.getprofile() is not None) == paced, (serving, share)
        assert sys.getprofile() is None


@pytest.mark.parametrize("share", ["0", "-0.5", "1.5"])
def test_a_load_cpu_share_outside_0_to_1_is_exit_2_naming_the_flag(
        share: str, capsys: pytest.CaptureFixture) -> None:
    from serving.server import main

    with pytest.raises(SystemExit) as exited:  # a usage error, as argparse's own
        main(["--model-dir", "nowhere", "--load-cpu-share", share])
    bound = "above 0" if float(share) <= 0 else "at most 1"
    assert exited.value.code == 2
    assert f"--load-cpu-share must be {bound}, got {float(share)}" in capsys.readouterr().err


def test_failed_loads_are_retried_then_given_up(caplog: pytest.LogCaptureFixture) -> None:
    fake = _Fake()
    fake.dirs = {1: "m/1", 2: "m/2"}
    fake.broken = {2}
    store = _store(fake, retries=2, interval=60.0)
    with caplog.at_level(logging.WARNING, "babyweight.serving"):
        store.refresh()
        store.refresh()
    assert store.current.version == 1 and fake.loads == [2, 1]  # no retry before the interval
    assert _states(store) == [(1, "AVAILABLE"), (2, "LOADING")]
    assert "half copied" in store.statuses()[1].error_message
    assert sum("Ignoring" in r.getMessage() for r in caplog.records) == 1  # once per name
    for _ in range(2):
        fake.now += 60.0
        store.refresh()
    assert fake.loads == [2, 1, 2, 2]  # 1 try + 2 retries
    assert _states(store) == [(1, "AVAILABLE"), (2, "END")]
    fake.now += 600.0
    store.refresh()
    assert fake.loads == [2, 1, 2, 2]  # given up
    del fake.dirs[2]  # pushed again under the same number: a new version, tried anew
    store.refresh()
    fake.dirs[2] = "m/2"
    fake.broken = set()
    store.refresh()
    assert store.current.version == 2


def test_polls_count_every_refresh_that_finished_even_a_failed_one() -> None:
    """What /healthz reports as `polls`: a test waits for polls instead of sleeping."""
    fake = _Fake()
    fake.dirs = {1: "m/1"}
    store = _store(fake)
    store.refresh()

    def unreadable(_: str) -> Tuple[Dict[int, str], List[str]]:
        raise OSError("the disk went away")

    store._list_dirs = unreadable
    with pytest.raises(OSError):
        store.refresh()
    assert store.polls == 2 and store.current.version == 1


def test_a_complete_newer_version_wins_once_it_loads() -> None:
    """The served version is deleted while a newer one is still being copied."""
    fake = _Fake()
    fake.dirs = {1: "m/1", 2: "m/2"}
    store = _store(fake)
    store.refresh()
    assert store.current.version == 2
    fake.dirs[3] = "m/3"
    fake.broken = {3}
    store.refresh()
    del fake.dirs[2]
    store.refresh()
    assert store.current.version == 1  # the newest that loads now
    fake.broken = set()  # the copy finished
    fake.now += 60.0
    assert store.refresh() == 3
    assert _states(store) == [(3, "AVAILABLE"), (2, "END"), (1, "END")]


def test_deleting_the_only_version_unloads_it() -> None:
    fake = _Fake()
    fake.dirs = {1: "m/1"}
    store = _store(fake)
    store.refresh()
    served = store.acquire()  # a request still running on version 1
    fake.dirs = {}
    store.refresh()
    assert store.current is None and store.ever_served
    assert _states(store) == [(1, "END")]
    assert store.release_retired() == 1  # kept until its last request is done
    store.release(served)
    assert store.release_retired() == 0


# ------------------------------------------------------------------------------------------------
# A real server
# ------------------------------------------------------------------------------------------------

def _half_copy(stand_in_models: ServingModels, target: pathlib.Path) -> None:
    """What `cp -r` leaves mid-copy: the directory and some files, not yet a SavedModel."""
    (target / "variables").mkdir(parents=True)
    (target / "saved_model.pb").write_bytes(b"half a file")


def _finish_copy(stand_in_models: ServingModels, version: int, target: pathlib.Path) -> None:
    (target / "saved_model.pb").unlink()
    shutil.rmtree(target / "variables")
    shutil.copytree(stand_in_models.exports[version], target, dirs_exist_ok=True)


def _serving(session: httpx.Client) -> str:
    answer = statuses(session)
    return answer[0]["version"] if answer and answer[0]["state"] == "AVAILABLE" else ""


def test_half_copied_version_is_retried_and_the_newest_loadable_wins(
        stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    """cp -r of version 3 while 2 serves; 2 is deleted: 1 serves, then 3 once complete."""
    model_dir = stand_in_models.serving_dir(tmp_path, versions=(1, 2))
    server = server_factory(model_dir, "--poll-seconds", "0.2", "--max-num-load-retries",
                            "100000", "--load-retry-interval-micros", "300000",
                            "--load-cpu-share", "1")
    session = httpx.Client(base_url=server.url, timeout=30)
    row = [COURSE_PAYLOAD["instances"][0]]
    v1, v2 = (float(in_process_predictions(stand_in_models.exports[v], row)[0]) for v in (1, 2))
    assert _serving(session) == "2"
    with Traffic(server.predict_url()) as traffic:
        _half_copy(stand_in_models, model_dir / "3")
        wait_for(lambda: "Version 3 at" in server.log())
        shutil.rmtree(model_dir / "2")
        wait_for(lambda: _serving(session) == "1")
        assert any(s["version"] == "3" and s["state"] == "LOADING" for s in statuses(session))
        _finish_copy(stand_in_models, 1, model_dir / "3")
        wait_for(lambda: _serving(session) == "3")
        seen = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= seen + 5)
    assert traffic.failures == []
    assert all(close_to(a, v1) or close_to(a, v2) for a in traffic.answers)  # 3 is 1's copy
    assert close_to(traffic.answers[-1], v1)
    session.close()


def test_deleting_the_only_version_unloads_it_as_tf_serving_does(
        stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path)
    server = server_factory(model_dir, "--poll-seconds", "0.2")
    session = httpx.Client(base_url=server.url, timeout=30)
    shutil.rmtree(model_dir / "1")
    wait_for(lambda: statuses(session)[0]["state"] == "END")
    assert statuses(session) == [{"version": "1", "state": "END",
                                  "status": {"error_code": "OK", "error_message": ""}}]
    answer = session.post(server.predict_url(), json=COURSE_PAYLOAD, headers=JSON)
    assert answer.status_code == 404
    assert answer.json() == {"error": f"Servable not found for request: Latest({MODEL_NAME})"}
    assert session.post(server.predict_url(1), json=COURSE_PAYLOAD,
                        headers=JSON).status_code == 404
    assert session.get(f"/v1/models/{MODEL_NAME}/metadata").status_code == 404
    assert session.get("/healthz").status_code == 503
    stand_in_models.push(model_dir, 2)
    wait_for(lambda: _serving(session) == "2")
    assert session.post(server.predict_url(), json=COURSE_PAYLOAD,
                        headers=JSON).status_code == 200
    session.close()


def test_version_names_that_are_not_versions_are_ignored_once_each(
        stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    """Such directories used to make every poll fail, so nothing ever loaded."""
    model_dir = stand_in_models.serving_dir(tmp_path)
    names = ["\u00b2", "\u2460", "\u0661", "9" * 200, str(INT64_MAX + 1)]  # 255-byte names
    for name in names:
        (model_dir / name).mkdir()
    # Healthy: version 1 loaded. Version 2 then loads unpaced (the paced load under traffic is
    # test_serving_reload.py's).
    server = server_factory(model_dir, "--poll-seconds", "0.1", "--load-cpu-share", "1")
    session = httpx.Client(base_url=server.url, timeout=30)
    wait_for(lambda: server.log().count("Ignoring") >= len(names))
    seen = server.log().count("Now serving")
    stand_in_models.push(model_dir, 2)  # polls go on
    wait_for(lambda: server.log().count("Now serving") > seen)
    assert server.log().count("Ignoring") == len(names)
    assert "Traceback" not in server.log()
    assert [s["version"] for s in statuses(session)] == ["2", "1"]
    session.close()
