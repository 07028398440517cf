"""One pure-ASGI middleware for the access log and the Prometheus metrics.

Why one: each middleware that notes an answer's status wraps `send` in a closure of its own and
times the request itself; with the access log and the metrics on, a request paid that twice on
the event loop. Here it is timed once and its status noted once, and both are told. It runs
outermost, so the access log sees every answer, the Host/token guard's refusals too; the
metrics count the /v1/ requests that got past the guard (serving/security.py marks the ones it
refuses), as when they had a middleware inside it.
"""
from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, MutableMapping, Optional

from serving import access_log
from serving.metrics import Metrics
from serving.security import REFUSED


class Recorder:
    """Times each HTTP request; tells the access log (`log`) and `metrics` (when not None)."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: Optional[Metrics],
                 log: bool, version_header: str) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log
        self._header = version_header.lower().encode()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":  # the lifespan's startup and shutdown
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        api = metrics.api_of(scope["method"], scope["path"]) if metrics is not None else None
        started = time.perf_counter()
        status, version = 500, ""
        header = self._header

        async def send_and_note(message: MutableMapping[str, Any]) -> None:
            nonlocal status, version
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", ()):
                    if key == header:
                        version = value.decode()
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            if self.log:
                access_log.line(scope["method"], scope["path"], status, seconds * 1e3)
            if api is not None and REFUSED not in scope:
                metrics.observe(api, "rest", str(status), version,  # type: ignore[union-attr]
                                seconds)
