"""The server against other web pages and other users, and against its own OpenAPI document.

A page in the user's browser must not be able to use a loopback server (JSON-only :predict,
the Host check), a token guards every endpoint when set, and schemathesis finds no 5xx and no
answer that disagrees with /openapi.json.
"""
from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any, Callable, List

import httpx
import pytest

from tests.serving_fixtures import (COURSE_PAYLOAD, MODEL_NAME, PROJECT_ROOT,
                                    RunningServer, ServingModels)

pytest_plugins = ("tests.serving_fixtures",)

NOT_VERSIONS = ["%C2%B2", "\u2460", "\u0661", "1" * 5000, str(2 ** 63), "-1", "+1", "1.5",
                "latest", "%201"]


@pytest.fixture(scope="module")
def client(shared_server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=shared_server.url, timeout=30) as result:
        yield result


@pytest.mark.parametrize("version", NOT_VERSIONS, ids=lambda v: repr(v[:12]))
def test_a_version_is_ascii_digits_that_fit_int64(client: httpx.Client, version: str) -> None:
    """TF Serving's 400s: 'Malformed request' for non-digits, 'Failed to convert' beyond int64."""
    base = f"/v1/models/{MODEL_NAME}/versions/{version}"
    answers = [client.post(f"{base}:predict", json=COURSE_PAYLOAD), client.get(base),
               client.get(f"{base}/metadata")]
    for answer in answers:
        assert answer.status_code == 400, (version[:20], answer.text[:200])
        message = answer.json()["error"]
        digits = version.isascii() and version.isdigit()
        assert message.startswith("Failed to convert version" if digits
                                  else "Malformed request"), message[:200]
        assert len(message) < 400


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_predict_takes_only_declared_json(client: httpx.Client, shared_server: RunningServer,
                                          content_type: Any) -> None:
    """The bodies a page may send cross-origin without a preflight are refused: 415."""
    import json

    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post(f"/v1/models/{MODEL_NAME}:predict",
                         content=json.dumps(COURSE_PAYLOAD).encode(), headers=headers)
    assert answer.status_code == 415, answer.text
    assert "application/json" in answer.json()["error"]
    fine = client.post(f"/v1/models/{MODEL_NAME}:predict", json=COURSE_PAYLOAD,
                       headers={"Content-Type": "application/json; charset=utf-8"})
    assert fine.status_code == 200


@pytest.mark.parametrize("host", ["evil.example:{port}", "evil.example", "localhost.evil:{port}",
                                  "127.0.0.1:1", "10.0.0.1:{port}", ""])
def test_a_loopback_server_answers_only_loopback_host_names(
        client: httpx.Client, shared_server: RunningServer, host: str) -> None:
    """DNS rebinding: a page's own name resolved to 127.0.0.1 reaches the port, not the API."""
    port = shared_server.url.rsplit(":", 1)[1]
    for method, path in (("POST", f"/v1/models/{MODEL_NAME}:predict"), ("GET", "/"),
                         ("GET", f"/v1/models/{MODEL_NAME}")):
        answer = client.request(method, path, json=COURSE_PAYLOAD,
                                headers={"Host": host.format(port=port)})
        assert answer.status_code == 400, (host, path, answer.text)
        assert "Host header" in answer.json()["error"]


def test_loopback_host_names_are_answered(client: httpx.Client,
                                          shared_server: RunningServer) -> None:
    port = shared_server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.1", "LOCALHOST"):
        answer = client.get("/healthz", headers={"Host": host})
        assert answer.status_code == 200, (host, answer.text)


def test_wrong_methods_get_405_with_allow(client: httpx.Client) -> None:
    for method, path, allowed in (("GET", f"/v1/models/{MODEL_NAME}:predict", "POST"),
                                  ("DELETE", "/healthz", "GET"),
                                  ("POST", f"/v1/models/{MODEL_NAME}/metadata", "GET")):
        answer = client.request(method, path)
        assert answer.status_code == 405, (method, path)
        assert answer.headers["allow"] == allowed
        assert set(answer.json()) == {"error"}


def test_a_token_guards_every_endpoint(stand_in_models: ServingModels,
                                       server_factory: Callable[..., RunningServer],
                                       tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    good = {"Authorization": "Bearer s3cret-token"}
    server = server_factory(stand_in_models.serving_dir(tmp_path), "--auth-token-file",
                            str(token_file), headers=good)
    with httpx.Client(base_url=server.url, timeout=30) as session:
        paths: List[tuple] = [("GET", "/"), ("GET", "/healthz"), ("GET", "/openapi.json"),
                              ("GET", f"/v1/models/{MODEL_NAME}"), ("GET", "/ui/app.js"),
                              ("POST", f"/v1/models/{MODEL_NAME}:predict")]
        for method, path in paths:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "Basic czNjcmV0LXRva2Vu"}):
                answer = session.request(method, path, json=COURSE_PAYLOAD, headers=headers)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.headers["www-authenticate"].startswith("Bearer ")
            assert session.request(method, path, json=COURSE_PAYLOAD,
                                   headers=good).status_code == 200, path
        spec = session.get("/openapi.json", headers=good).json()
        assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_an_unreadable_token_file_is_exit_2_naming_it(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "no-such-token"
    empty = tmp_path / "empty-token"
    empty.write_text("  \n")
    for path in (missing, empty):
        done = subprocess.run(
            [sys.executable, "-m", "serving.server", "--model-dir", str(tmp_path),
             "--auth-token-file", str(path)], cwd=PROJECT_ROOT, capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 2, done.stderr
        assert str(path) in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------------------------------------
# The server against its own OpenAPI document
# ------------------------------------------------------------------------------------------------

def test_openapi_document_matches_the_server(shared_server: RunningServer) -> None:
    """Schemathesis on every operation, valid and invalid requests, a fixed seed
    (tests/openapi_check.py, in a process of its own).

    Checks: no 5xx, every status, content type, header and body as documented (valid requests
    name the served model, so its answers are checked too), and invalid requests (per the
    document) refused. Not checked: that every valid request is accepted, since two rules
    JSON Schema cannot state are the server's (a b64 value must be a serialized tf.Example;
    the columnar format's lists must be equally long).
    """
    import json

    done = subprocess.run([sys.executable, "-m", "tests.openapi_check", shared_server.url,
                           MODEL_NAME], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    failures, unconstrained = result["failures"], result["unconstrained"]
    assert len(result["operations"]) >= 7
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    # Only an operation with nothing constrained (no body, free-form names) has no invalid
    # request; :predict has a body, and the versioned paths a version.
    assert not [label for label in unconstrained if ":predict" in label or "{version}" in label]
