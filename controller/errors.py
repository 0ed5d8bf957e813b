"""The root of the service's own errors: a caller decides what to do from what an error says.

Each boundary keeps its own hierarchy next to its code (``controller.cattle.errors``,
``controller.kube.errors``, the store's, the tokens', the signatures', the drivers' ``TargetRefused``
and ``ConfirmTimeout``, the body readers' ``Malformed*``...): its classes name what went wrong there
and carry that boundary's details (an HTTP status, a machine code, a field). All of them derive from
``WebhookServiceError``, which adds what a caller outside that boundary needs, so a caller that only
has to decide whether to try again keeps no list of classes from several boundaries:

- ``retryable``: the failure is temporary, and the same request may pass later unchanged (Cattle is
  down, the store is locked, a target has not converged yet). The reconciler retries exactly these,
  with backoff; it fails the intents on any other. At the HTTP edge they are the answers that ask the
  sender to come back (503, 429 with ``Retry-After``).
- ``retry_after``: the least wait, in seconds, that the failing side asked for (Cattle's or the API
  server's ``Retry-After``, a shared rate limit's refill), or None.
- ``summary``: the error as one line for a status field or a log: the class names the kind of failure,
  the message the case.

``retryable`` and ``retry_after`` are class attributes, so each class states its default once; an
instance may override them (``retry_after`` from an answer's header). An exception that is not a
``WebhookServiceError`` is a bug, and nobody classifies it: the reconciler does not retry it (the
target's worker ends with it), and the listener logs it with its traceback and answers 500 without
details.
"""

from __future__ import annotations


class WebhookServiceError(Exception):
    """Base of every error the service raises on purpose."""

    retryable: bool = False
    retry_after: float | None = None

    @property
    def summary(self) -> str:
        return f"{type(self).__name__}: {self}"
