"""Pass-through drivers: a hit that is forwarded and answered synchronously instead of recorded.

Every other driver turns a hit into a durable intent that the reconciler applies later. A
``Forwarder`` instead hands the hit to its target at once and the listener answers with what the
target answered: nothing is recorded, retried or folded. The listener has one generic hook for
drivers that implement this protocol (``isinstance(driver, Forwarder)``), so a new pass-through
driver is, like any driver, one module under ``controller/drivers/`` and no change to the listener.

Failures to get an answer at all are ``ForwardError`` s carrying the HTTP status and code the
listener answers with (502 / 504); an upstream's own error status is an answer, passed on as is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from controller.drivers.base import DriverContext
from controller.errors import WebhookServiceError
from controller.model import Receiver

TOKEN_PARAMS = frozenset({"key", "token", "projectId"})  # the listener's own; never forwarded


@dataclass(frozen=True)
class ForwardedHit:
    body: bytes
    content_type: str  # as sent, parameters included ("" when the hit had none)
    query: list[tuple[str, str]]  # the hit's query in order, without TOKEN_PARAMS


@dataclass(frozen=True)
class ForwardAnswer:
    status: int
    body: bytes
    content_type: str  # "" when the upstream sent none


class ForwardError(WebhookServiceError):
    """No usable answer from upstream; ``status`` / ``code`` are the listener's answer."""

    status = 502
    code = "upstream_unavailable"


class UpstreamUnavailable(ForwardError):
    """Cattle (or its proxy) could not be reached, or no Cattle is configured for the receiver."""


class UpstreamTimeout(ForwardError):
    status = 504
    code = "upstream_timeout"


class UpstreamTooLarge(ForwardError):
    code = "upstream_too_large"


@runtime_checkable
class Forwarder(Protocol):
    async def forward(self, receiver: Receiver, hit: ForwardedHit, ctx: DriverContext) -> ForwardAnswer: ...


def forwarded_query(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in pairs if name not in TOKEN_PARAMS]
