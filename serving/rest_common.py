"""What the REST handlers share: JSON answers, a path's version, the body reader, the context,
and the three paths that name a version, each handler's endpoints on them.

Handlers are module-level functions (serving/rest_model.py, serving/rest_predict.py); what they
serve reaches them as `request.app.state.context` (a `Context`, set by serving/app.py).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Awaitable, Callable, Iterator, NamedTuple, Optional, Tuple

from fastapi import Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect

from serving import security
from serving.encoding import encode_json
from serving.metrics import Metrics
from serving.request_log import RequestLog
from serving.service import ApiError, Label, Service, Wanted
from serving.versions import parse_version

# Bodies over the limit are still read (and dropped) up to this multiple of it, so the client
# gets its 400 instead of a connection reset; beyond that the connection is simply closed.
_DRAIN_FACTOR = 4


@dataclasses.dataclass(frozen=True)
class Context:
    """One app's served model (its versions, batcher, limits), request log and metrics."""

    service: Service
    request_log: Optional[RequestLog] = None
    metrics: Optional[Metrics] = None


class ByVersion(NamedTuple):
    """One thing for each way a TF Serving path names the version: none (the served one),
    /versions/<number>, /labels/<label>."""

    latest: Any
    version: Any
    label: Any


MODEL_PATH = "/v1/models/{model_name}"
VERSION_PATHS = ByVersion(MODEL_PATH, MODEL_PATH + "/versions/{version}",
                          MODEL_PATH + "/labels/{label}")


# A handler of every path shape: (request, model name, the version asked for) -> the answer;
# the version is None (the served one), the path's text, or a Label.
Answer = Callable[[Request, str, Optional[str]], Awaitable[Response]]


def endpoints(answer: Answer, names: ByVersion) -> ByVersion:
    """`answer` as the endpoints of VERSION_PATHS, taking each one's path parameters.

    `names` name the endpoints, and so FastAPI's operation ids in /openapi.json.
    """
    async def latest(request: Request, model_name: str) -> Response:
        return await answer(request, model_name, None)

    async def version(request: Request, model_name: str, version: str) -> Response:
        return await answer(request, model_name, version)

    async def label(request: Request, model_name: str, label: str) -> Response:
        return await answer(request, model_name, Label(label))

    made = ByVersion(latest, version, label)
    for endpoint, name in zip(made, names):
        endpoint.__name__ = endpoint.__qualname__ = name
    return made


def version_routes(answer: Answer, names: ByVersion, summaries: ByVersion,
                   suffix: str = "") -> Iterator[Tuple[str, Callable[..., Any], str]]:
    """(path, endpoint, summary) for each of VERSION_PATHS followed by `suffix`."""
    return zip([path + suffix for path in VERSION_PATHS], endpoints(answer, names), summaries)


def context(request: Request) -> Context:
    return request.app.state.context


def json_response(value: Any, status: int = 200) -> Response:
    return Response(encode_json(value), status_code=status, media_type="application/json")


def error_response(status: int, message: str, headers: Optional[dict] = None) -> Response:
    response = json_response({"error": message}, status)
    response.headers.update(headers or {})
    return response


def version_number(version: Optional[str], method: str, path: str) -> Wanted:
    """A path's version as TF Serving reads it: ASCII digits that fit int64, else a 400.

    A label (from a /labels/<label> path) is passed on as it is.
    """
    if version is None or isinstance(version, Label):
        return version
    number = parse_version(version)
    if number is not None:
        return number
    if version.isascii() and version.isdigit():
        shown = version if len(version) <= 40 else f"{version[:20]}...({len(version)} digits)"
        raise ApiError(400, f"Failed to convert version: {shown} to numeric.")
    raise ApiError(400, f"Malformed request: {method} {path[:200]}: a version is ASCII digits")


def require_json(request: Request, what: str, shown: bool) -> None:
    """TF Serving's bodies are JSON: anything else is a 415 (serving/security.py says why)."""
    sent = request.headers.get("content-type")
    if not security.is_json_content_type(sent):
        got = f"; got {sent or 'no Content-Type'!r}" if shown else ""
        raise ApiError(415, f"{what} must be JSON, sent with 'Content-Type: "
                       f"{security.JSON_MEDIA_TYPE}'{got}")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, or ApiError(400) when it is over `limit` bytes (checked while reading).

    Reads the ASGI messages directly: Starlette's stream() generator costs more per request.
    """
    declared = request.headers.get("content-length")
    too_big = False
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"invalid Content-Length header {declared!r}")
        too_big = int(declared) > limit
    chunks, size, more = [], 0, True
    while more:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            too_big = True
            if size > _DRAIN_FACTOR * limit:
                break
        if not too_big:
            chunks.append(chunk)
    if too_big:
        raise ApiError(400, f"request body of {declared or size} bytes is over the limit of "
                       f"{limit} bytes (--max-body-bytes); split the batch")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
