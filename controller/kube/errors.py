"""The Kubernetes API boundary's errors, one hierarchy, classified once from the HTTP answer.

``retryable`` (``controller.errors``) tells the one retry loop (the reconciler, or the store's
compare-and-swap loop) what to do; nothing else inspects status codes. ``KubeConflict`` is both
"stale resourceVersion" and "already exists": both mean "read again and decide again".
"""

from __future__ import annotations

from controller.errors import WebhookServiceError


class KubeError(WebhookServiceError):
    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeUnavailable(KubeError):
    """The API server can't be reached, or answered 429/5xx."""

    retryable = True

    def __init__(self, message: str, *, status: int = 0, reason: str = "", retry_after: float | None = None):
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class KubeUnauthorized(KubeError):
    """401/403: the service account lacks a permission (see manifests/rbac.yaml)."""

    retryable = True


class KubeNotFound(KubeError):
    pass


class KubeConflict(KubeError):
    """409: the object changed since it was read (stale resourceVersion), or it already exists."""

    @property
    def already_exists(self) -> bool:
        return self.reason == "AlreadyExists"


class KubeInvalid(KubeError):
    """400/422: the request itself is wrong (schema, immutable field)."""


def classify(status: int, reason: str, message: str, retry_after: float | None = None) -> KubeError:
    text = f"{status} {reason}: {message}".strip()
    if status in (401, 403):
        return KubeUnauthorized(text, status=status, reason=reason)
    if status == 404:
        return KubeNotFound(text, status=status, reason=reason)
    if status == 409:
        return KubeConflict(text, status=status, reason=reason)
    if status in (400, 422):
        return KubeInvalid(text, status=status, reason=reason)
    return KubeUnavailable(text, status=status, reason=reason, retry_after=retry_after)
