"""Error answers of the listener, built only here, at the HTTP edge.

Views raise errors and never build error answers: the listener's own ``HttpError(status, code,
message)`` where only the view knows the answer (a missing token, a body that timed out), and
otherwise the error of the boundary that failed, as it is (a ``TokenError``, a ``SignatureError``,
a ``ForwardError``, the store's ``StoreUnavailable``, a body reader's ``MalformedBody``...).
``http_error`` is the one mapping from those to answers, and the middleware turns it — and aiohttp's
own HTTP exceptions (unknown path, wrong method, body over ``client_max_size``) — into one JSON shape::

    {"type": "error", "status": 404, "code": "not_found", "message": "..."}

``code`` is the machine-readable part a client can branch on; ``message`` is a sentence for people.
An error that asks the sender to come back later (``retry_after``) is answered with ``Retry-After``.
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

from controller.drivers.contract import ForwardError, MalformedBody
from controller.errors import WebhookServiceError
from controller.listener.alertmanager import MalformedPayload
from controller.listener.ratelimit import retry_after_header
from controller.listener.signature import SignatureError
from controller.store.base import LedgerFull, StoreUnavailable
from controller.tokens import TokenError, TokenRejected

logger = logging.getLogger(__name__)

# Codes for aiohttp's own HTTP exceptions; others fall back to "http_<status>".
_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This method is not allowed on this path."),
    413: ("body_too_large", "The request body is larger than the service accepts."),
}


class HttpError(WebhookServiceError):
    """An error answer: HTTP status, machine code, human sentence, extra headers (e.g. Retry-After)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = dict(headers or {})


def error_response(error: HttpError) -> web.Response:
    body = {"type": "error", "status": error.status, "code": error.code, "message": error.message}
    return web.json_response(body, status=error.status, headers=error.headers)


def protocol_error(status: int) -> HttpError:
    """The answer to a request the HTTP parser refused (400), or to a failure outside any handler."""
    if status == 400:
        return HttpError(400, "malformed_request", "The request is not valid HTTP/1.1.")
    if status >= 500:
        return internal_error(status)
    code, message = _HTTP_CODES.get(status, (f"http_{status}", "Request failed."))
    return HttpError(status, code, message)


def from_http_exception(exc: web.HTTPException) -> HttpError:
    code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason or "Request failed."))
    headers: dict[str, str] = {}
    if isinstance(exc, web.HTTPMethodNotAllowed):
        headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        message = f"Method {exc.method} is not allowed here; use {headers['Allow']}."
    return HttpError(exc.status, code, message, headers)


def http_error(error: Exception) -> HttpError | None:
    """The answer to an error a view let through; None for one that is no answer of ours (a bug)."""
    match error:
        case HttpError():
            return error
        case web.HTTPException() if error.status >= 400:
            return from_http_exception(error)
        case TokenError():
            return HttpError(403 if isinstance(error, TokenRejected) else 401, error.code, str(error))
        case SignatureError():
            return HttpError(error.status, error.code, error.message, _retry_after(error))
        case ForwardError():
            return HttpError(error.status, error.code, str(error))
        case LedgerFull():
            return HttpError(
                503,
                "target_backlog_full",
                "The target has too many hits waiting; retry later.",
                _retry_after(error),
            )
        case StoreUnavailable():
            return HttpError(
                503,
                "store_unavailable",
                "The hit could not be recorded; retry shortly.",
                {"Retry-After": "1"},
            )
        case MalformedBody():
            return HttpError(
                400, "malformed_body", f"The body is malformed at {error.field}: {error.message}."
            )
        case MalformedPayload():
            return HttpError(400, "malformed_body", f"{error}.")
    return None


def internal_error(status: int = 500) -> HttpError:
    """The answer to our own bug: nothing about it reaches the client."""
    return HttpError(status, "internal_error", "The service failed to answer; see its log.")


def _retry_after(error: WebhookServiceError) -> dict[str, str]:
    return {} if error.retry_after is None else {"Retry-After": retry_after_header(error.retry_after)}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as e:
        if isinstance(e, web.HTTPException) and e.status < 400:
            raise  # a redirect is an answer, not an error
        answer = http_error(e)
        if answer is None:
            logger.exception("unexpected error answering %s %s", request.method, request.path)
            answer = internal_error()
        return error_response(answer)
