"""A model config file on the real server: labels over REST and gRPC, re-read, bad files.

Versions 1 and 2 are the two small trained models of tests/serving_fixtures.py (they predict
differently), or their stand-ins (tests/tiny_exports.py) where only which version answers is
checked, served at once under `specific { 1, 2 }` with stable -> 1 and canary -> 2.
"""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Callable, Dict, Iterator, Tuple

import grpc
import httpx
import pytest
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from serving import ui
from tests.serving_fixtures import (COURSE_PAYLOAD, JSON, MODEL_NAME, PROJECT_ROOT,
                                    RunningServer, ServingModels, close_to,
                                    in_process_predictions, start_server, stop_server,
                                    version_status, wait_for)
from tests.test_serving_grpc import COURSE_INSTANCES, _columns, predict_request
from tests.test_serving_model_config import config_text
from tests.test_serving_predict import CANONICAL

pytest_plugins = ("tests.serving_fixtures",)

BOTH = "model_version_policy { specific { versions: 1 versions: 2 } }"


def _replace(path: pathlib.Path, text: str) -> None:
    """Written whole, then renamed: the server never reads half a file."""
    staging = path.with_suffix(".tmp")
    staging.write_text(text)
    os.replace(staging, path)


def _write(path: pathlib.Path, labels: Dict[str, int], policy: str = BOTH) -> None:
    _replace(path, config_text(policy, labels, base_path=str(path.parent / MODEL_NAME)))


def _labelled(serving_models: ServingModels, root: pathlib.Path) -> Tuple[pathlib.Path, list]:
    """The --model-dir and flags of a server labelling versions 1 and 2 (stable, canary)."""
    model_dir = serving_models.serving_dir(root, versions=(1, 2))
    config = model_dir.parent / "models.config"
    _write(config, {"stable": 1, "canary": 2})
    # --model-dir points elsewhere: the file's base_path wins, as its name does. The second
    # version loads while the first serves: unpaced, so the tests need not wait for a tenth of
    # a core to load it.
    return root / "unused", ["--model-config-file", str(config),
                             "--model-config-file-poll-wait-seconds", "0.2",
                             "--poll-seconds", "0.2", "--load-cpu-share", "1"]


@pytest.fixture(scope="module")
def labelled(serving_models: ServingModels,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One labelled server for the tests that only read it."""
    root = tmp_path_factory.mktemp("labelled")
    model_dir, flags = _labelled(serving_models, root)
    server = start_server(model_dir, root / "server.log", *flags)
    yield server
    stop_server(server)


@pytest.fixture()
def relabelled(stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
               tmp_path: pathlib.Path) -> RunningServer:
    """A labelled server of its own, for a test that rewrites its config file (the versions
    are stand-ins: only which one answers is checked)."""
    model_dir, flags = _labelled(stand_in_models, tmp_path)
    return server_factory(model_dir, *flags)


def _predicted(session: httpx.Client, path: str) -> tuple:
    answer = session.post(path, json=COURSE_PAYLOAD, headers=JSON)
    assert answer.status_code == 200, answer.text
    return int(answer.headers[ui.VERSION_HEADER]), answer.json()["predictions"][0]


def test_labels_over_rest(labelled: RunningServer, serving_models: ServingModels) -> None:
    row = [COURSE_PAYLOAD["instances"][0]]
    one, two = (float(in_process_predictions(serving_models.exports[v], row)[0]) for v in (1, 2))
    base = f"/v1/models/{MODEL_NAME}"
    with httpx.Client(base_url=labelled.url, timeout=30) as session:
        wait_for(lambda: session.get(f"{base}/labels/stable/metadata").status_code == 200)
        version, value = _predicted(session, f"{base}/labels/stable:predict")
        assert version == 1 and close_to(value, one)
        version, value = _predicted(session, f"{base}/labels/canary:predict")
        assert version == 2 and close_to(value, two)
        assert _predicted(session, f"{base}:predict")[0] == 2  # no version: the newest
        assert _predicted(session, f"{base}/versions/1:predict")[0] == 1  # both serve
        assert session.get(f"{base}/labels/stable/metadata").json()["model_spec"][
            "version"] == "1"
        # TF Serving's GetModelStatus does not look at the label: every version.
        assert session.get(f"{base}/labels/stable").json() == {
            "model_version_status": [version_status(2), version_status(1)]}
        regress = session.post(f"{base}/labels/stable:regress", headers=JSON, json={
            "signature_name": "regression",
            "examples": [{**CANONICAL, "mother_age": 26, "gestation_weeks": 39}]})
        assert regress.status_code == 200 and regress.headers[ui.VERSION_HEADER] == "1"
        assert close_to(regress.json()["result"][0], one)
        for path, status, message in (
                (f"{base}/labels/beta:predict", 400, "Unrecognized servable version label: beta"),
                ("/v1/models/other/labels/stable:predict", 400,
                 "Unrecognized servable version label: stable"),
                (f"{base}/labels/beta:classify", 400,
                 "Unrecognized servable version label: beta")):
            answer = session.post(path, json=COURSE_PAYLOAD, headers=JSON)
            assert (answer.status_code, answer.json()) == (status, {"error": message}), path
        assert session.get(f"{base}/labels/beta/metadata").json() == {
            "error": "Unrecognized servable version label: beta"}
        assert session.get(f"{base}/labels/stable:predict").status_code == 405


def test_labels_over_grpc(labelled: RunningServer) -> None:
    with httpx.Client(base_url=labelled.url, timeout=30) as session:
        wait_for(lambda: session.get(
            f"/v1/models/{MODEL_NAME}/labels/canary/metadata").status_code == 200)
    with grpc.insecure_channel(labelled.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for label, version in (("stable", 1), ("canary", 2)):
            request = predict_request(_columns(COURSE_INSTANCES))
            request.model_spec.version_label = label
            assert stub.Predict(request, timeout=30).model_spec.version.value == version
            metadata = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"])
            metadata.model_spec.name, metadata.model_spec.version_label = MODEL_NAME, label
            assert stub.GetModelMetadata(metadata, timeout=30).model_spec.version.value == \
                version
        request.model_spec.version_label = "beta"
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(request, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details() == "Unrecognized servable version label: beta"
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name, status.model_spec.version_label = MODEL_NAME, "stable"
        found = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status,
                                                                                 timeout=30)
        assert [s.version for s in found.model_version_status] == [2, 1]


def test_the_file_is_read_again(relabelled: RunningServer) -> None:
    config = pathlib.Path(relabelled.log_path).parent / "serving" / "models.config"
    base = f"/v1/models/{MODEL_NAME}"
    with httpx.Client(base_url=relabelled.url, timeout=30) as session:
        wait_for(lambda: session.get(f"{base}/labels/stable/metadata").status_code == 200)
        _write(config, {"stable": 2, "canary": 2})  # the canary is promoted
        wait_for(lambda: _predicted(session, f"{base}/labels/stable:predict")[0] == 2)
        # A label on a version that does not serve: refused, logged once, labels kept.
        _write(config, {"stable": 2, "canary": 7})
        wait_for(lambda: "version 7 of model babyweight" in relabelled.log())
        # A file that is not a config: logged once, the previous config stays.
        _replace(config, "model_config_list { config { name: 'babyweight'")
        wait_for(lambda: "previous config stays" in relabelled.log())
        # Back to latest 1: version 1 unloads, so a label on it is refused; stable stays on 2.
        _write(config, {"stable": 1}, "model_version_policy { latest { num_versions: 1 } }")
        wait_for(lambda: session.get(base).json()["model_version_status"][1]["state"] == "END")
        wait_for(lambda: "version 1 of model babyweight" in relabelled.log())
        assert _predicted(session, f"{base}/labels/stable:predict")[0] == 2
        assert _predicted(session, f"{base}:predict")[0] == 2
        assert session.post(f"{base}/versions/1:predict", json=COURSE_PAYLOAD,
                            headers=JSON).status_code == 404
    log = relabelled.log()
    assert log.count("version 7 of model babyweight") == 1
    assert log.count("previous config stays") == 1


@pytest.mark.parametrize("labels,policy,words", [
    ({"stable": 3}, BOTH, ["version 3 of model babyweight", "not currently available"]),
    ({}, "model_version_policy { specific { } }", ["specific", "no versions"]),
], ids=["label on a missing version", "bad policy"])
def test_a_bad_file_at_start_is_a_clear_exit(stand_in_models: ServingModels,
                                             tmp_path: pathlib.Path, labels: Dict[str, int],
                                             policy: str, words: list) -> None:
    model_dir = stand_in_models.serving_dir(tmp_path, versions=(1, 2))
    config = model_dir.parent / "models.config"
    _write(config, labels, policy)
    done = subprocess.run(
        [sys.executable, "-m", "serving.server", "--model-config-file", str(config),
         "--port", "0", "--grpc-port", "0"], cwd=PROJECT_ROOT, capture_output=True, text=True,
        env={**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300)
    assert done.returncode == 2
    assert "Cannot use --model-config-file" in done.stderr and "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr


def _reload(stub: model_service_pb2_grpc.ModelServiceStub, text: str) -> None:
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    response = stub.HandleReloadConfigRequest(request, timeout=300)
    assert response.status.error_code == 0, response


def test_a_config_handed_over_grpc_applies_at_once(
        stand_in_models: ServingModels, server_factory: Callable[..., RunningServer],
        tmp_path: pathlib.Path) -> None:
    """HandleReloadConfigRequest with the stock ModelServiceStub, as a team's deploy script
    calls TF Serving: the call returns once the config serves; bad ones get TF Serving's
    codes and the previous config stays."""
    model_dir = stand_in_models.serving_dir(tmp_path, versions=(1, 2))
    # No file: the latest version serves. Loads unpaced: the test waits for each one.
    server = server_factory(model_dir, "--poll-seconds", "0.2", "--load-cpu-share", "1")
    base_path = str(model_dir)
    with grpc.insecure_channel(server.grpc_target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        _reload(models, config_text(BOTH, {"stable": 1, "canary": 2}, base_path=base_path))
        # Returned once applied: no waiting here.
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = MODEL_NAME
        found = models.GetModelStatus(status, timeout=30).model_version_status
        assert [(s.version, s.state) for s in found] == [(2, 30), (1, 30)]  # AVAILABLE
        request = predict_request(_columns(COURSE_INSTANCES))
        for label, version in (("stable", 1), ("canary", 2)):
            request.model_spec.version_label = label
            assert predictions.Predict(request, timeout=30).model_spec.version.value == version

        cases = [
            (config_text(BOTH, {"stable": 7}, base_path=base_path),
             grpc.StatusCode.FAILED_PRECONDITION,
             "Request to assign label to version 7 of model babyweight, which is not "
             "currently available for inference"),
            (config_text(BOTH, name="other", base_path=base_path),
             grpc.StatusCode.INVALID_ARGUMENT, "ReloadConfigRequest: names model 'other'"),
            ("custom_model_config { }", grpc.StatusCode.INVALID_ARGUMENT,
             "ServerModelConfig type not supported by HandleReloadConfigRequest. Only "
             "ModelConfigList is currently supported"),
        ]
        for text, code, message in cases:
            with pytest.raises(grpc.RpcError) as raised:
                _reload(models, text)
            assert raised.value.code() == code
            assert raised.value.details().startswith(message), raised.value.details()
        request.model_spec.version_label = "stable"  # the labels stayed
        assert predictions.Predict(request, timeout=30).model_spec.version.value == 1
