"""Drivers whose intents are not scale steps: they read the hit's body, and they apply intents themselves.

Scale drivers fit the listener and the reconciler as they are: a hit's intent comes from the spec
(``driver.intent``) and the reconciler folds intents into an absolute scale. Some drivers need more,
and each need is one ``runtime_checkable`` Protocol here with one generic hook where it is used (the
same way ``controller.forwarding.Forwarder`` is the listener's hook for pass-through drivers):

- ``BodyReader`` - the hit's body decides whether it acts and what it asks for (e.g. serviceUpgrade
  reads the pushed image and tag from a registry's webhook). The listener calls ``decide`` after the
  suspend check, instead of its Alertmanager parsing and ``driver.intent``; a ``MalformedBody`` is
  answered 400 ``malformed_body`` naming the field.
- ``IntentApplier`` - the pending intents are carried out by the driver, not folded into a scale.
  The reconciler hands it every pending intent of the target, in arrival order; it returns one
  ``FoldStep`` per intent once they are done, and only then are they marked folded. So an intent
  stays pending until its work is finished, and ``apply_intents`` must be idempotent: it observes
  the target first and continues work that an interrupted pass started instead of starting it again.
  It raises ``TargetRefused`` for permanent failures, ``CattleError`` / ``ConfirmTimeout`` for
  retryable ones (the reconciler's usual classification).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from controller.bodies import ReceiverSpec
from controller.drivers.base import DriverContext
from controller.errors import WebhookServiceError
from controller.model import Target
from controller.store.base import FoldStep, PendingIntent


@dataclass(frozen=True)
class Decision:
    """What a hit's body asks for: act (with ``intent``, a JSON object) or be ignored (with ``reason``)."""

    disposition: Literal["act", "ignored"]
    reason: str | None = None
    intent: dict[str, Any] | None = None


class MalformedBody(WebhookServiceError):
    """The body is not what the receiver is configured to read; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@runtime_checkable
class BodyReader(Protocol):
    def decide(self, spec: ReceiverSpec, body: bytes, content_type: str) -> Decision: ...


@runtime_checkable
class IntentApplier(Protocol):
    async def apply_intents(
        self, target: Target, pending: Sequence[PendingIntent], ctx: DriverContext
    ) -> list[FoldStep]:
        """Carry out ``pending`` (in order) and return one step per intent, once all are done.

        A step's ``after`` is what the intent achieved as a number (serviceUpgrade: how many services
        run the pushed image; 0 for an intent superseded by a newer one). The reconciler records the
        last step's ``after`` as the target's "desired" value, which for these drivers is not a scale.
        """
        ...
