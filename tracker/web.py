"""HTTP plumbing shared by every route: bounded JSON bodies and error answers.

Error shapes follow DESIGN.md: 400 ``{"errors": {field: [messages]}}``, every
other error ``{"detail": "..."}``. A caller's mistake is never a 500, and no
traceback ever reaches a caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope

from tracker import errors, logs, metrics

JSON_MEDIA_TYPE = "application/json"
DATABASE_RETRY_AFTER_SECONDS = 5
log = logs.get_logger("tracker.http")


class PayloadTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than {limit} bytes")


class UnsupportedMediaType(HTTPException):
    def __init__(self) -> None:
        super().__init__(415, "the body must be JSON, sent as Content-Type: application/json")


def is_json_media_type(content_type: str) -> bool:
    """``application/json`` or ``application/*+json``, any parameters (charset)."""
    media = content_type.partition(";")[0].strip().lower()
    return media == JSON_MEDIA_TYPE or (
        media.startswith("application/") and media.endswith("+json")
    )


def require_json_content_type(request: Request) -> None:
    """Refuse (415) a body declared as anything but JSON. An undeclared one is read as
    JSON: the internal API takes nothing else, and simple clients omit the header."""
    declared = request.headers.get("content-type")
    if declared is not None and not is_json_media_type(declared):
        raise UnsupportedMediaType


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes ``limit`` bytes."""
    return await read_asgi_body(request.scope, request.receive, limit)


async def read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The same from a bare ASGI request (the callback endpoint's): refused as soon
    as the declared length or the bytes received pass ``limit``."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """A JSON object body, or a 400 that says what is wrong with it (415 if the
    request declares another media type)."""
    require_json_content_type(request)
    raw = await read_body(request, limit)
    if not raw.strip():
        raise errors.ValidationFailed({"body": ["a JSON object is required"]})
    try:
        data = json.loads(raw, parse_constant=errors.refuse_json_constant)
    except RecursionError:
        raise errors.ValidationFailed({"body": ["invalid JSON: nested too deeply"]}) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise errors.ValidationFailed({"body": [f"invalid JSON: {exc}"]}) from None
    if not isinstance(data, dict):
        raise errors.ValidationFailed({"body": ["a JSON object is required"]})
    return data


def error_response(
    status_code: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status_code, headers=headers)


def validation_response(field_errors: Mapping[str, Sequence[str]]) -> JSONResponse:
    return JSONResponse({"errors": {k: list(v) for k, v in field_errors.items()}}, status_code=400)


async def on_http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101 - registered for this type only
    if exc.status_code in {204, 304}:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def on_validation_failed(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ValidationFailed)  # noqa: S101
    return validation_response(exc.errors)


async def on_not_found(_request: Request, exc: Exception) -> Response:
    return error_response(404, str(exc) or "not found")


async def on_conflict(_request: Request, exc: Exception) -> Response:
    return error_response(409, str(exc))


async def on_database_unavailable(request: Request, exc: Exception) -> Response:
    """503 with Retry-After, and one warning line (an outage is not a bug: no traceback)."""
    assert isinstance(exc, errors.DatabaseUnavailable)  # noqa: S101
    metrics.DATABASE_UNAVAILABLE.inc()
    log.warning("database_unavailable", route=route_template(request.scope), error=exc.cause)
    headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
    return error_response(503, "database unavailable", headers)


_CONVERTER = re.compile(r"\{(\w+):\w+\}")


def template(path: str) -> str:
    """A route path as logs, metrics and OpenAPI spell it: ``{id:uuid}`` -> ``{id}``."""
    return _CONVERTER.sub(r"{\1}", path)


def route_template(scope: Mapping[str, Any]) -> str | None:
    """The matched route's template (``/v1/messages/{id}``), never the raw path."""
    path = getattr(scope.get("route"), "path", None)
    return template(path) if isinstance(path, str) else None


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: on_http_exception,
    errors.ValidationFailed: on_validation_failed,
    errors.NotFound: on_not_found,
    errors.Conflict: on_conflict,
    errors.DatabaseUnavailable: on_database_unavailable,
}  # anything else: middleware.RequestContextMiddleware answers a bare 500
