"""Cattle's errors as one hierarchy. Each says whether it is worth retrying and after how long.

The client maps HTTP answers and transport failures to these; the reconciler's single retry loop
reads ``retryable`` and ``retry_after`` (``controller.errors``); nothing converts them to HTTP answers
of our own.
"""

from __future__ import annotations

from controller.errors import WebhookServiceError


class CattleError(WebhookServiceError):
    """Base class. ``status`` is the HTTP status (0 for transport failures)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class CattleUnavailable(CattleError):
    """Timeout, refused connection, or a 5xx: Cattle is down or overloaded."""

    retryable = True


class CattleBusy(CattleError):
    """409 or 422: the resource is busy (e.g. upgrading); the same request may pass later."""

    retryable = True


class CattleUnauthorized(CattleError):
    """401 or 403: the access key / secret key are wrong or lack access. Retried with backoff,
    since a person may fix the credentials, but reported as a credentials error."""

    retryable = True


class CattleNotFound(CattleError):
    """404: the service (or project) is gone. Not retried."""


class CattleRequestError(CattleError):
    """Any other 4xx: the request itself is wrong. Not retried."""


class CattleProtocolError(CattleError):
    """The answer was not the JSON Cattle sends (e.g. not Cattle at that URL)."""

    retryable = True


class CattleTimeout(CattleUnavailable):
    """No (complete) answer within the request's timeout."""


class CattleAnswerTooLarge(CattleProtocolError):
    """The answer's body is larger than the caller accepts (a proxied upstream's, say)."""

    retryable = False
