"""What the server's own pure ASGI middlewares share.

Pure ASGI (no Starlette request objects): the hot path pays nothing for a middleware beyond
its own work. Each one handles HTTP requests only; anything else (the lifespan's startup and
shutdown) must reach the app untouched, or the app never starts.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, MutableMapping


class HttpMiddleware:
    """Passes every non-HTTP scope straight on and hands HTTP requests to `http`."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                   send: Callable[..., Any]) -> None:
        raise NotImplementedError
