"""Hot reload on the real server: a new version switches in under traffic, a broken one is
retried as configured and never replaces the served one, an empty directory answers 503. The
versions are tests/tiny_exports.py's stand-ins of the model: which one answers is checked."""
from __future__ import annotations

import pathlib
from typing import Callable

import httpx

from tests.serving_fixtures import (COURSE_PAYLOAD, MODEL_NAME, RunningServer, ServingModels,
                                    Traffic, close_to, in_process_predictions, statuses,
                                    version_status, wait_for)

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)


def test_hot_reload_switches_without_failures_and_survives_a_broken_version(
        stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path)
    # A half-copied push the pusher left behind: hidden, so never loaded.
    (model_dir / ".9.incomplete").mkdir()
    # The loader paced (--load-cpu-share below 1), as served; at half a core rather than the
    # default tenth, so the switch under traffic is not drawn out.
    server = server_factory(model_dir, "--poll-seconds", "0.2", "--max-num-load-retries", "0",
                            "--load-cpu-share", "0.5")
    row = [COURSE_PAYLOAD["instances"][0]]
    old, new = (float(in_process_predictions(stand_in_models.exports[v], row)[0]) for v in (1, 2))
    assert not close_to(old, new)

    session = httpx.Client(base_url=server.url, timeout=30)
    with Traffic(server.predict_url()) as traffic:
        wait_for(lambda: len(traffic.answers) >= 20)
        stand_in_models.push(model_dir, 2)
        wait_for(lambda: statuses(session)[0]["version"] == "2")
        seen = len(traffic.answers)
        wait_for(lambda: len(traffic.answers) >= seen + 20)
    assert traffic.failures == []
    assert all(close_to(a, old) or close_to(a, new) for a in traffic.answers)
    assert close_to(traffic.answers[0], old) and close_to(traffic.answers[-1], new)
    # TF Serving lists the unloaded one.
    assert statuses(session) == [version_status(2), version_status(1, "END")]
    answer = session.post(server.predict_url(2), json=COURSE_PAYLOAD).json()["predictions"]
    assert close_to(answer[0], new)
    assert session.post(server.predict_url(1), json=COURSE_PAYLOAD).status_code == 404

    # A broken version 3 with no retries allowed: logged, reported END, not tried again;
    # version 2 keeps serving.
    staging = model_dir / ".3.incomplete"
    (staging / "variables").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    staging.rename(model_dir / "3")
    with Traffic(server.predict_url()) as traffic:
        wait_for(lambda: any(s["version"] == "3" for s in statuses(session)))
        polls = session.get("/healthz").json()["polls"]
        wait_for(lambda: session.get("/healthz").json()["polls"] >= polls + 5)  # none retries 3
    seen_statuses = statuses(session)
    assert seen_statuses[0] == version_status(2)
    assert seen_statuses[1]["version"] == "3" and seen_statuses[1]["state"] == "END"
    failed = seen_statuses[1]["status"]
    assert failed["error_code"] != "OK" and failed["error_message"]
    assert traffic.failures == [] and traffic.answers
    assert all(close_to(a, new) for a in traffic.answers)
    assert session.get(f"/v1/models/{MODEL_NAME}/versions/3").json()[
        "model_version_status"][0]["state"] == "END"
    assert session.post(server.predict_url(3), json=COURSE_PAYLOAD).status_code == 404
    assert session.get("/healthz").json()["version"] == 2
    assert server.log().count("Version 3 at") == 1
    session.close()


def test_healthz_is_503_until_a_version_exists(stand_in_models: ServingModels,
                                               tmp_path: pathlib.Path) -> None:
    """An app started on an empty directory answers 503, then serves the first push.

    In process (FastAPI's TestClient runs the app and its poller): no model to wait for.
    """
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ModelConfig

    model_dir = tmp_path / "serving" / MODEL_NAME
    model_dir.mkdir(parents=True)
    app = create_app(ModelConfig(model_dir=str(model_dir), model_name=MODEL_NAME),
                     poll_seconds=0.1, access_log=False, manage_heap=False)
    with TestClient(app) as session:
        assert session.get("/healthz").status_code == 503
        answer = session.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD)
        assert answer.status_code == 503 and "error" in answer.json()
        assert session.get(f"/v1/models/{MODEL_NAME}").status_code == 404
        stand_in_models.push(model_dir, 1)
        wait_for(lambda: session.get("/healthz").status_code == 200)
        assert session.post(f"/v1/models/{MODEL_NAME}:predict",
                            json=COURSE_PAYLOAD).status_code == 200
