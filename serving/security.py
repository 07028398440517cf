"""What keeps other web pages and other users off the server: Host check, bearer token, JSON only.

A page open in the user's browser can send requests to a loopback server: a "simple" cross-origin
POST (Content-Type text/plain, or none) needs no CORS preflight, and DNS rebinding makes the
attacker's own host name resolve to 127.0.0.1, so the browser even lets the page read the
answer. Three rules close that: bodies must be declared JSON (a page can only send that
cross-origin after a preflight this server never grants), a server bound to loopback answers only
requests addressed to a loopback name (a rebound name is not one), and an optional bearer token
guards every endpoint for servers other people can reach.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
from typing import Any, Awaitable, Callable, FrozenSet, MutableMapping, Optional

from serving.asgi import HttpMiddleware

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
REFUSED = "babyweight.refused"  # set in the ASGI scope of a request the Guard answered itself
JSON_MEDIA_TYPE = "application/json"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, 'localhost')."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind_host: str, port: int) -> Optional[FrozenSet[str]]:
    """The Host header values a server bound to `bind_host` accepts; None means any.

    Bound to loopback, only loopback names, with or without this port. Bound to another
    address, the server is meant to be reached by names this code cannot know.
    """
    if not is_loopback(bind_host):
        return None
    return frozenset(n for name in LOOPBACK_NAMES for n in (name, f"{name}:{port}"))


def is_json_content_type(value: Optional[str]) -> bool:
    """Whether a Content-Type header declares a JSON body (parameters such as charset allowed)."""
    if not value:
        return False
    return value.split(";", 1)[0].strip().lower() == JSON_MEDIA_TYPE


def read_token_file(path: str) -> str:
    """The token in `path` (surrounding whitespace dropped); ValueError if it is empty."""
    with open(path, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        raise ValueError(f"the auth token file {path} is empty")
    return token


class Guard(HttpMiddleware):
    """The Host check and the bearer token, before anything else runs."""

    def __init__(self, app: Callable[..., Awaitable[None]], hosts: Optional[FrozenSet[str]],
                 token: Optional[str], realm: str) -> None:
        super().__init__(app)
        self.hosts = hosts
        self.token = token.encode() if token else None
        self.realm = realm

    async def http(self, scope: MutableMapping[str, Any], receive: Callable[..., Any],
                   send: Callable[..., Any]) -> None:
        headers = dict(scope["headers"])
        if self.hosts is not None:
            host = headers.get(b"host", b"").decode("latin-1").lower()
            if host not in self.hosts:
                scope[REFUSED] = True
                await _answer(send, 400, f"Host header {host!r} is not accepted: this server is "
                              "bound to loopback and answers only localhost, 127.0.0.1 or [::1]")
                return
        if self.token is not None:
            given = headers.get(b"authorization", b"")
            scheme, _, credentials = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(credentials.strip(),
                                                                      self.token):
                scope[REFUSED] = True
                challenge = f'Bearer realm="{self.realm}"'
                if given:
                    challenge += ', error="invalid_token"'
                await _answer(send, 401, "this server needs 'Authorization: Bearer <token>' "
                              "(the token in its --auth-token-file)" if not given else
                              "the bearer token is not this server's",
                              [(b"www-authenticate", challenge.encode())])
                return
        await self.app(scope, receive, send)


async def _answer(send: Callable[..., Any], status: int, message: str,
                  extra: Optional[list] = None) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
