"""Error answers of the listener, built only here, at the HTTP edge.

Handlers raise ``ApiError(status, code, message)``; the middleware turns it — and aiohttp's own
HTTP exceptions (unknown path, wrong method, body over ``client_max_size``) — into one JSON shape::

    {"type": "error", "status": 404, "code": "not_found", "message": "..."}

``code`` is the machine-readable part a client can branch on; ``message`` is a sentence for people.
Anything else a handler raises is our bug: it is logged with its traceback and answered 500 with a
generic message, so no stack trace or internal detail ever reaches a client.

A request aiohttp can't parse (not HTTP, a NUL in a header, a broken chunk size) never reaches a
handler: the listener's protocol (``controller.listener.server``) answers it with ``protocol_error``,
in the same shape — 400 ``malformed_request`` — and never quotes the request back, as aiohttp's own
plain-text answer does (with its query, token included).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from aiohttp import web
from aiohttp.typedefs import Handler

logger = logging.getLogger(__name__)

# Codes for aiohttp's own HTTP exceptions; others fall back to "http_<status>".
_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This method is not allowed on this path."),
    413: ("body_too_large", "The request body is larger than the service accepts."),
}


class ApiError(Exception):
    """An error answer: HTTP status, machine code, human sentence, extra headers (e.g. Retry-After)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = dict(headers or {})


def error_response(error: ApiError) -> web.Response:
    body = {"type": "error", "status": error.status, "code": error.code, "message": error.message}
    return web.json_response(body, status=error.status, headers=error.headers)


def protocol_error(status: int) -> ApiError:
    """The answer to a request the HTTP parser refused (400), or to a failure outside any handler."""
    if status == 400:
        return ApiError(400, "malformed_request", "The request is not valid HTTP/1.1.")
    if status >= 500:
        return ApiError(status, "internal_error", "The service failed to answer; see its log.")
    code, message = _HTTP_CODES.get(status, (f"http_{status}", "Request failed."))
    return ApiError(status, code, message)


def from_http_exception(exc: web.HTTPException) -> ApiError:
    code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason or "Request failed."))
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        message = f"Method {exc.method} is not allowed here; use {headers['Allow']}."
    return ApiError(exc.status, code, message, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(from_http_exception(e))
    except Exception:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return error_response(ApiError(500, "internal_error", "The service failed to answer; see its log."))
