"""The REST server as a real process: status, metadata, health, the OpenAPI document, access log.

Predict is in test_serving_predict.py, hot reload in test_serving_reload.py, the batcher on its
own in test_serving_batcher.py; the models are tiny ones trained once per session
(tests/serving_fixtures.py).
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Optional

import httpx
import pytest

from modules import features
from tests import server_forks, serving_fixtures, shared_zygote
from tests.serving_fixtures import (MODEL_NAME, RunningServer, post_predict, version_status,
                                    wait_for)

# Registered as a plugin (not imported by name) so session fixtures run once per session.
pytest_plugins = ("tests.serving_fixtures",)


def test_model_status_endpoints(client: httpx.Client) -> None:
    for path in (f"/v1/models/{MODEL_NAME}", f"/v1/models/{MODEL_NAME}/versions/1"):
        answer = client.get(path)
        assert answer.status_code == 200
        assert answer.json() == {"model_version_status": [version_status(1)]}
    for path, status in ((f"/v1/models/{MODEL_NAME}/versions/7", 404),
                         (f"/v1/models/{MODEL_NAME}/versions/latest", 400),
                         ("/v1/models/other", 404),
                         (f"/v1/models/{MODEL_NAME}:predict", 405),
                         ("/v1/nothing", 404)):
        answer = client.get(path)
        assert answer.status_code == status, path
        assert set(answer.json()) == {"error"}, path


def test_metadata_has_tf_serving_shape(client: httpx.Client) -> None:
    answer = client.get(f"/v1/models/{MODEL_NAME}/metadata")
    assert answer.status_code == 200
    body = answer.json()
    assert body["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "serving_tf_example", "transform_features"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    dtypes = {name: spec["dtype"] for name, spec in default["inputs"].items()}
    assert dtypes == {**{f.name: "DT_STRING" for f in features.CATEGORICAL_FEATURES},
                      **{f.name: "DT_FLOAT" for f in features.NUMERIC_FEATURES}}
    assert list(default["outputs"]) == [features.LABEL_KEY]
    assert default["inputs"][features.MOTHER_AGE.name]["tensor_shape"]["dim"] == [
        {"size": "-1", "name": ""}]
    assert client.get(f"/v1/models/{MODEL_NAME}/versions/1/metadata").json() == body
    assert client.get(f"/v1/models/{MODEL_NAME}/versions/2/metadata").status_code == 404


def test_healthz_and_openapi(client: httpx.Client) -> None:
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["version"] == 1
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/v1/models/{model_name}:predict"]["post"]
    assert "/v1/models/{model_name}/versions/{version}:predict" in spec["paths"]
    schema = predict["requestBody"]["content"]["application/json"]["schema"]
    row = schema["oneOf"][0]["properties"]["instances"]["items"]["properties"]
    assert row[features.MOTHER_AGE.name]["maximum"] == features.MOTHER_AGE.max_value
    assert features.PLURALITY_NAMES[1] in row[features.PLURALITY.name]["enum"]
    items = schema["oneOf"][0]["properties"]["instances"]["items"]
    columnar = schema["oneOf"][1]["properties"]["inputs"]
    required = [f.name for f in features.FEATURES if f.required]
    assert features.PLURALITY.name in required
    assert items["required"] == columnar["required"] == required
    assert client.get("/docs").status_code == 200


def test_access_log_lines(shared_server: RunningServer, client: httpx.Client) -> None:
    """One line per request (method, path, status, latency), written within a moment."""
    post_predict(client, {"instances": []})

    def lines() -> List[str]:
        return [line for line in shared_server.log().splitlines()
                if f"POST /v1/models/{MODEL_NAME}:predict 400 " in line]

    wait_for(lambda: bool(lines()))
    assert lines()[-1].rstrip().endswith(" ms")


def test_a_forked_server_s_exit_code_and_output_are_its_own(tmp_path) -> None:
    """The servers above are forked (tests/server_forks.py): a server that stops at its flags
    still gives `python -m serving.server`'s exit code and message, in its own log. Its fork
    is the run's one zygote's (tests/shared_zygote.py), whichever xdist worker asks."""
    log = tmp_path / "server.log"
    process = serving_fixtures._ZYGOTE.spawn(["--no-such-flag"], log)
    assert process.wait(timeout=300) == 2
    assert "unrecognized arguments: --no-such-flag" in log.read_text()
    run = shared_zygote.run_directory()
    ended = [json.loads(line) for line in (run / server_forks.CHILDREN).read_text().splitlines()]
    assert {"pid": process.pid, "log": str(log), "code": 2}.items() <= next(
        e for e in ended if e["pid"] == process.pid).items()


def test_port_0_serves_on_the_port_it_logs_and_taken_ports_are_named(
        serving_models: serving_fixtures.ServingModels, tmp_path) -> None:
    """--port 0: the system picks the port, and the log and the Host check know which (they
    said 0 and refused every request). A port in use, REST's or gRPC's, stops a second server
    before it loads, and no other gRPC server can share this one's port (grpc's SO_REUSEPORT
    would let the kernel deal the calls between the two without a word)."""
    import re
    from concurrent import futures

    import grpc

    log, grpc_port = tmp_path / "server.log", serving_fixtures.free_port()
    process = serving_fixtures.spawn_server(
        ["--model-dir", str(serving_models.serving_dir(tmp_path)), "--model-name", MODEL_NAME,
         "--port", "0", "--grpc-port", str(grpc_port)], log)
    try:
        serving_line = r"on http://127\.0\.0\.1:(\d+) "
        text = lambda: log.read_text() if log.exists() else ""  # noqa: E731 - the fork makes it
        wait_for(lambda: re.search(serving_line, text()) is not None)
        port = int(re.search(serving_line, text()).group(1))
        assert port != 0
        url = f"http://localhost:{port}/v1/models/{MODEL_NAME}"
        available = {"model_version_status": [version_status(1)]}
        wait_for(lambda: _status(url) == available)  # 200 LOADING first, then this
        for flag, taken in (("--port", ["--port", str(port), "--grpc-port", "0"]),
                            ("--grpc-port", ["--port", "0", "--grpc-port", str(grpc_port)])):
            second_log = tmp_path / f"second{flag}.log"
            second = serving_fixtures.spawn_server(["--model-dir", str(tmp_path), *taken],
                                                   second_log)
            assert second.wait(timeout=300) == 1
            taken_port = port if flag == "--port" else grpc_port
            assert (f"error: cannot listen on 127.0.0.1 port {taken_port} (--host, {flag}): "
                    "Address already in use") in second_log.read_text()
        other = grpc.server(futures.ThreadPoolExecutor(1))  # grpc's defaults: SO_REUSEPORT on
        try:
            with pytest.raises(RuntimeError, match="Failed to bind"):
                other.add_insecure_port(f"127.0.0.1:{grpc_port}")
        finally:
            other.stop(None)
    finally:
        process.terminate()
        process.wait(timeout=60)


def _status(url: str) -> Optional[Dict[str, Any]]:
    """The version status once the server answers 200 (its log line comes before it listens)."""
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _nodelay_of_accepted(sock: Any) -> int:
    """TCP_NODELAY on a connection accepted through `sock` by asyncio's create_server, as
    uvicorn serves on the socket the server binds."""
    import asyncio
    import socket

    async def accept() -> int:
        seen = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                seen.set_result(transport.get_extra_info("socket").getsockopt(
                    socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 60)
        finally:
            writer.close()
            listening.close()
            await listening.wait_closed()

    return asyncio.run(accept())


def test_the_server_s_connections_send_replies_without_waiting_for_acks() -> None:
    """The socket the server binds says it is TCP, so asyncio turns Nagle's algorithm off on
    each connection: a socket made without naming IPPROTO_TCP left it on, and every REST reply,
    written in two parts, waited for the client's delayed ACK (tens of milliseconds)."""
    import socket

    from serving import server

    assert _nodelay_of_accepted(server.listen("127.0.0.1", 0)) != 0
    plain = socket.socket(family=socket.AF_INET)  # the way that left it on
    plain.bind(("127.0.0.1", 0))
    assert _nodelay_of_accepted(plain) == 0, "the probe tells the two apart"


def test_one_port_for_rest_and_grpc_is_refused_before_anything_loads(tmp_path, capsys) -> None:
    """Both flags named in one line (exit 2), not a traceback once the model has loaded."""
    from common.net import free_port
    from serving import server

    port = str(free_port())
    assert server.main(["--model-dir", str(tmp_path), "--port", port, "--grpc-port", port]) == 2
    assert capsys.readouterr().err == (f"error: --port and --grpc-port are both {port}: REST "
                                       "and gRPC each need a port of their own\n")


def test_the_grpc_probe_cannot_share_the_rest_socket_s_port(capsys) -> None:
    """The REST socket listens before the gRPC port is probed: bound but not listening, both
    sockets took one port (SO_REUSEADDR), and gRPC later took REST's."""
    import socket

    from common.net import free_port
    from serving import server
    from serving.settings import ServerConfig

    # A port free_port() found may be taken by another process before REST binds it, and one
    # the system gives REST may be the one free_port() returned: each is tried again.
    for _ in range(10):
        port = free_port()
        listener = server._listener(ServerConfig(port=port, grpc_port=port))
        err = capsys.readouterr().err
        if "(--host, --port)" not in err:
            break
    assert listener is None and err == (f"error: cannot listen on 127.0.0.1 port {port} "
                                        "(--host, --grpc-port): Address already in use\n")
    for _ in range(10):
        listener = server._listener(ServerConfig(port=0, grpc_port=free_port()))
        if listener is not None:
            break
        capsys.readouterr()
    assert listener is not None
    try:
        assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        listener.close()
