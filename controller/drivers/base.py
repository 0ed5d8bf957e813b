"""What every driver is handed: the context it acts in, and the helpers every driver shares.

- ``DriverContext`` - the clients a driver acts through (Cattle, Kubernetes, per-receiver Cattle
  credentials) and its timing (how long it waits for a target to show a change);
- ``wait_until`` - the one polling loop of drivers that wait for a target to settle;
- ``TargetRefused`` - the target can never be acted on as asked; the reconciler fails the intents
  with its message instead of retrying;
- ``ConfirmTimeout`` - the target has not shown the change within the wait; the reconciler retries.

What a driver *is* and what it can do is ``controller.drivers.contract``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from controller.cattle.client import CattleClient
from controller.errors import WebhookServiceError
from controller.kube.client import KubeClient
from controller.model import Receiver, Target


class TargetRefused(WebhookServiceError):
    """The target exists but can't be acted on (e.g. a global service has no scale)."""

    @property
    def summary(self) -> str:
        return str(self)  # written for the receiver's status: the class name would add nothing


class ConfirmTimeout(WebhookServiceError):
    """The target did not show the change within the driver's wait; the next attempt looks again."""

    retryable = True


CATTLE_SECRET_CLAIM = "cattleSecretRef"  # in a target's claims: "namespace/name" of its credentials Secret


def project_id_schema(holds: str) -> dict[str, Any]:
    """The schema of a Cattle driver's ``projectId``; ``holds`` is what the project holds for it."""
    return {
        "type": "string",
        "pattern": "^1a[0-9]+$",
        "description": f"The Cattle project (environment) id that holds {holds}, like 1a5.",
    }


class CattleClients(Protocol):
    """Cattle clients for targets whose receiver names its own credentials (``spec.cattleSecretRef``)."""

    async def for_target(self, target: Target) -> CattleClient: ...


@dataclass(frozen=True)
class DriverContext:
    cattle: CattleClient | None  # None in operator mode without a default Cattle (no CATTLE_URL)
    kube: KubeClient | None = None  # set in operator mode; drivers of Kubernetes workloads need it
    cattle_clients: CattleClients | None = None  # set in operator mode, where cattleSecretRef works
    # The receivers currently declared for a target id (from the registry): for settings that belong to
    # receivers rather than to intents, like scaleHost's deleteOption.
    receivers_of: Callable[[str], Sequence[Receiver]] = lambda _target_id: ()

    async def cattle_for(self, target: Target) -> CattleClient:
        """The Cattle client for the target: its receiver's own credentials, else the defaults."""
        if CATTLE_SECRET_CLAIM not in target.claims:
            if self.cattle is None:
                raise TargetRefused("no Cattle is configured: set CATTLE_URL, or spec.cattleSecretRef")
            return self.cattle
        if self.cattle_clients is None:
            raise TargetRefused("spec.cattleSecretRef works only in operator mode (webhook-service operator)")
        return await self.cattle_clients.for_target(target)

    confirm_timeout: float = 60.0
    poll_interval: float = 0.02  # first wait before re-reading the target; doubles up to poll_max
    poll_max: float = 1.0


_T = TypeVar("_T")


async def wait_until(
    read: Callable[[], Awaitable[_T]],
    done: Callable[[_T], bool],
    ctx: DriverContext,
    failure: Callable[[_T], str],
    *,
    first: _T | None = None,
) -> _T:
    """Poll ``read`` (waits doubling from ``ctx.poll_interval`` to ``ctx.poll_max``) until ``done``;
    ``ConfirmTimeout(failure(last))`` after ``ctx.confirm_timeout``, which the reconciler retries.
    ``first`` is a value already in hand (e.g. the answer to the write), checked before any read."""
    deadline = time.monotonic() + ctx.confirm_timeout
    wait = ctx.poll_interval
    value = first if first is not None else await read()
    while not done(value):
        if time.monotonic() > deadline:
            raise ConfirmTimeout(failure(value))
        await asyncio.sleep(wait)
        wait = min(wait * 2, ctx.poll_max)
        value = await read()
    return value
