"""`python -m serving.server`: serve the newest pushed babyweight model over TF Serving's REST API.

    .venv/bin/python -m serving.server --model-dir serving_model/babyweight \\
        --model-name babyweight --host 127.0.0.1 --port 8501

    curl -s localhost:8501/v1/models/babyweight
    curl -s -H 'Content-Type: application/json' -d '{"instances": [{"is_male": "True",
                 "mother_age": 26.0, "plurality": "Single(1)", "gestation_weeks": 39}]}' \\
        localhost:8501/v1/models/babyweight:predict

It watches --model-dir: a new version directory (the pipeline's ServingPusher renames one into
place) is loaded, warmed up and switched in by a background thread without dropping or stalling
a request; one that fails to load is logged, retried (--max-num-load-retries,
--load-retry-interval-micros) and meanwhile the current version keeps serving. OpenAPI: /docs
and /openapi.json.
"""
from __future__ import annotations

import argparse
import atexit
import io
import logging
import os
import signal
import socket
import sys
from typing import List, Optional


from common import logs  # noqa: E402
from common.config import command_parser, from_flags  # noqa: E402
from serving.settings import (BatchingConfig, LimitsConfig, ModelConfig,  # noqa: E402
                              RequestLogSettings, ServerConfig)

LOGGER = logging.getLogger("babyweight.serving")
ACCESS_LOGGER = "babyweight.serving.access"  # serving.app logs one line per request here
CONFIGS = (ModelConfig, ServerConfig, LimitsConfig, BatchingConfig, RequestLogSettings)


def parser() -> argparse.ArgumentParser:
    return command_parser("python -m serving.server", __doc__, *CONFIGS)


class BufferedLogHandler(logging.StreamHandler):
    """Writes records through a block buffer, handed to the file by `write_out`.

    For the access log: one write() per request is a system call per request on the thread
    that answers them; this makes it one per drain of serving/access_log.py's Deferred, which
    calls `write_out` after each (and at exit). Lines appear up to a drain's interval late.
    """

    def __init__(self, fd: int) -> None:
        stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(os.dup(fd), "w"), 1 << 16),
                                  encoding="utf-8", errors="replace")
        super().__init__(stream)
        atexit.register(self.write_out)

    def flush(self) -> None:  # emit() calls this after every record
        pass

    def write_out(self) -> None:
        with self.lock:
            if not self.stream.closed:
                self.stream.flush()


def buffer_access_log(interval: float = 0.2) -> None:
    """Access lines keep the root handlers' format but go through a BufferedLogHandler, and
    are made off the request path (serving/access_log.py), every `interval` seconds and on
    the way out."""
    from serving import access_log

    root = logging.getLogger().handlers
    handler = BufferedLogHandler(sys.stderr.fileno())
    if root:
        handler.setFormatter(access_log.stamp_once(root[0].formatter))
    access = logging.getLogger(ACCESS_LOGGER)
    access.addHandler(handler)
    access.propagate = False
    access_log.Deferred(handler, interval).install()


def grpc_address(server: ServerConfig) -> Optional[str]:
    """host:port for the gRPC API ([v6] in brackets), or None when --grpc-port is 0."""
    if server.grpc_port == 0:
        return None
    return f"{_address_host(server.host)}:{server.grpc_port}"


def _address_host(host: str) -> str:
    """`host` as it stands before `:port` in an address or URL: an IPv6 one in brackets."""
    return f"[{host}]" if ":" in host else host


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port before anything loads (as uvicorn's Config.bind_socket
    binds it): the REST one, so that with --port 0 the port the system picked is known to the
    Host check and the log, where uvicorn would bind it only once it starts; and a probe of
    the gRPC port. A port in use fails at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections
    # of a socket that says it is TCP, and a reply sent in two writes would otherwise wait for
    # the client's delayed ACK (tens of milliseconds) on every request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _listener(server: ServerConfig) -> Optional[socket.socket]:
    """The REST socket, once the gRPC port is known to be free too (gRPC binds it only as the
    app starts); None, with the taken port named, when either is not.

    The REST socket listens before the probe: two sockets that set SO_REUSEADDR may both bind
    one port while neither listens, so the probe would pass and gRPC take REST's port."""
    bound: List[socket.socket] = []
    ports = [("--port", server.port)] + ([("--grpc-port", server.grpc_port)]
                                         if server.grpc_port else [])
    for flag, port in ports:
        try:
            bound.append(listen(server.host, port))
            if len(bound) == 1:
                bound[0].listen()  # uvicorn sets its own backlog when it starts
        except OSError as error:
            print(f"error: cannot listen on {server.host} port {port} (--host, {flag}): "
                  f"{error.strerror or error}", file=sys.stderr)
            for sock in bound:
                sock.close()
            return None
    for probe in bound[1:]:
        probe.close()
    return bound[0]


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    model, server, limits, batching, request_log = (from_flags(c, args) for c in CONFIGS)
    try:
        model.check()
        server.check()
        request_log_config = request_log.config()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logs.setup(server.verbose)
    listener = _listener(server)
    if listener is None:
        return 1
    port = listener.getsockname()[1]
    from serving.model_config import ConfigError, with_config_file

    try:  # before TensorFlow's import: a wrong file is exit 2 at once (the app reads it again)
        with_config_file(model)
    except ConfigError as error:
        LOGGER.error("Cannot use --model-config-file: %s", error)
        return 2
    if server.access_log:
        buffer_access_log()
    import uvicorn

    from serving import security

    token = None
    if server.auth_token_file:
        try:
            token = security.read_token_file(server.auth_token_file)
        except (OSError, ValueError) as error:
            LOGGER.error("Cannot use --auth-token-file: %s", error)
            return 2
    from serving.app import configure_tensorflow, create_app

    configure_tensorflow(batching.tf_threads)

    try:
        app = create_app(model, limits, batching, poll_seconds=server.poll_seconds,
                         access_log=server.access_log,
                         hosts=security.allowed_hosts(server.host, port), token=token,
                         grpc_address=grpc_address(server), metrics=server.metrics,
                         request_log=request_log_config,
                         monitoring_dir=server.monitoring_dir or None,
                         grpc_threads=server.grpc_max_threads)
    except ConfigError as error:
        LOGGER.error("Cannot use --model-config-file: %s", error)
        return 2
    store = app.state.store
    if token is None and not security.is_loopback(server.host):
        LOGGER.warning("Bound to %s without --auth-token-file: anyone who can reach this "
                       "address can use the model.", server.host)
    LOGGER.info("Serving %s from %s (versions: %s) on http://%s:%d (docs: /docs), gRPC port "
                "%s", app.state.service.name, store.model_dir, store.policy.describe(),
                _address_host(server.host), port, server.grpc_port or "off")
    # uvicorn re-raises SIGTERM once its graceful shutdown is done; exit normally instead, so
    # atexit handlers (the buffered access log) still run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # httptools: the C parser (llhttp); uvicorn's pure-Python h11 parses each request holding
    # the interpreter lock the app's own work needs (benchmarks/results/serving.md).
    uvicorn.Server(uvicorn.Config(
        app, http="httptools", loop="asyncio", log_config=None, access_log=False,
        log_level="info" if server.verbose else "warning",
        timeout_graceful_shutdown=5)).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
