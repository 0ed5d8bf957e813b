"""The kopf handlers: thin adapters from kopf's arguments to the layers that do the work.

They run only in the active replica (kopf peering pauses the others), which makes that replica the
only one that mints tokens, writes status, and folds intents; every replica's listener still
accepts hits (see ``controller.operator.informer``).

- create / update / resume: ``ReceiverGrants.grant`` — spec checked, token kept or minted in its
  trigger Secret (``TriggerSecrets``), status and Events written.
- delete: kopf's finalizer holds the object until the token is revoked and the Secret deleted.
- timer: a periodic resync per Receiver — wake its target's reconcile, re-grant when a refusal came
  or went (``ReceiverGrants.recheck``).
- ledger events: an accepted hit recorded by any replica shows up as a change of its target's
  IntentLedger; the active replica wakes that target and mirrors the last hit and scale to status
  (``StatusMirror``).

Failures from the API are raised as ``kopf.TemporaryError`` here, and only here: kopf retries them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf

from controller.drivers.contract import DriverSet
from controller.kube.client import KubeClient
from controller.kube.errors import KubeError
from controller.operator.grants import ReceiverGrants
from controller.operator.status_mirror import MIRROR_DELAY, StatusMirror
from controller.operator.trigger_secrets import KeyHolder, SecretAppeared, TriggerSecrets, secret_name
from controller.receiver_set import ReceiverSet
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler
from controller.store import ledger as ledgers

logger = logging.getLogger(__name__)

GROUP, VERSION = "webhook-service.dev", "v1"

# KeyHolder is built by the wiring next to OperatorDeps, so it is importable from here too.
__all__ = ["KeyHolder", "OperatorDeps", "ReceiverHandlers", "register"]


@dataclass(frozen=True)
class OperatorDeps:
    client: KubeClient
    keys: KeyHolder
    receiver_set: ReceiverSet
    reconciler: Reconciler
    drivers: DriverSet
    schema: ReceiverSchema
    base_url: str
    namespace: str  # the operator's own: ledgers and the keys Secret live there
    clock: Callable[[], float] = time.time
    mirror_delay: float = MIRROR_DELAY


def register(
    registry: kopf.OperatorRegistry, deps: OperatorDeps, *, resync_interval: float
) -> ReceiverHandlers:
    """Register every handler on ``registry`` (one per operator instance, never kopf's global one)."""
    handlers = ReceiverHandlers(deps)
    kopf.on.resume(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
    kopf.on.create(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
    kopf.on.update(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
    kopf.on.delete(GROUP, VERSION, "receivers", id="revoke", registry=registry)(handlers.deleted)
    kopf.timer(GROUP, VERSION, "receivers", id="resync", interval=resync_interval, registry=registry)(
        handlers.resync
    )
    kopf.on.event(
        GROUP,
        VERSION,
        "intentledgers",
        id="ledger",
        when=lambda namespace, **_: bool(namespace == deps.namespace),
        registry=registry,
    )(handlers.ledger_changed)
    return handlers


class ReceiverHandlers:
    def __init__(self, deps: OperatorDeps) -> None:
        self.deps = deps
        self.secrets = TriggerSecrets(deps.client, deps.keys, base_url=deps.base_url, clock=deps.clock)
        self.grants = ReceiverGrants(
            deps.client, self.secrets, deps.drivers, deps.schema, wake=deps.reconciler.wake
        )
        self.mirror = StatusMirror(deps.client, delay=deps.mirror_delay)

    async def close(self) -> None:
        await self.mirror.close()

    async def changed(self, body: kopf.Body, **_: Any) -> None:
        try:
            await self.grants.grant(dict(body))
        except SecretAppeared as e:
            raise kopf.TemporaryError(str(e), delay=1) from e
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=5) from e

    async def deleted(self, body: kopf.Body, **_: Any) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        key = f"{namespace}/{name}"
        self.deps.receiver_set.remove(key)  # every replica's informer drops it on deletionTimestamp too
        try:
            await self.secrets.delete(namespace, name)
        except KubeError as e:
            raise kopf.TemporaryError(f"could not delete the trigger Secret: {e}", delay=5) from e
        logger.info("receiver %s deleted: token revoked, Secret %s deleted", key, secret_name(name))

    async def resync(self, body: kopf.Body, **_: Any) -> None:
        if await self.grants.recheck(dict(body)):
            await self.changed(body)

    async def ledger_changed(self, body: kopf.Body, **_: Any) -> None:
        target = str((body.get("spec") or {}).get("target") or "")
        if not target:
            return
        led = ledgers.from_json(body.get("ledger"), target)
        if ledgers.has_work(led):
            self.deps.reconciler.wake(target)
        self.mirror.ledger_changed(led)
