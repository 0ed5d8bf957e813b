"""The kopf handlers: thin adapters from kopf's arguments to the layers that do the work.

They run only in the active replica (kopf peering pauses the others), which makes that replica the
only one that mints tokens and writes status. Folding intents is the Lease holder's
(``controller.operator.leader``), which may be another replica: a wake in a replica that does not
lead is ignored. Every replica's listener still accepts hits (see ``controller.operator.informer``).

- create / update / resume: ``ReceiverGrants.grant`` — spec checked, token kept or minted in its
  trigger Secret (``TriggerSecrets``), status and Events written.
- delete: no handler, so no finalizer holds a Receiver back (an uninstall that removes the operator
  first must not leave Receivers, their CRD and their namespaces hanging). Nothing needs one: every
  replica's informer drops the token when the Receiver goes, and the garbage collector deletes the
  trigger Secret through its owner reference.
- resync: one periodic pass over all Receivers (``ReceiverHandlers.resync``), not a kopf timer per
  Receiver, which would need a finalizer on each — wake each target's reconcile, re-grant when a
  refusal came or went (``ReceiverGrants.recheck``). kopf's peering does not pause a task of ours, so
  each pass first asks whether this replica is the active one (``controller.operator.peering``). A
  Receiver that fails is logged and does not stop the pass.
- ledger events: none here. The leader follows the IntentLedgers itself (``controller.operator.app``,
  ``Leadership``), wakes the targets and mirrors the last hit and scale to status (``StatusMirror``,
  built here and shared): a kopf handler would watch the ledgers in every namespace, which would need
  cluster-wide permissions for objects that live in the operator's namespace only.

Failures from the API are raised as ``kopf.TemporaryError`` here, and only here: kopf retries them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import kopf

from controller.drivers.contract import DriverSet
from controller.kube.client import RECEIVERS, KubeClient
from controller.kube.errors import KubeError
from controller.operator.grants import ReceiverGrants
from controller.operator.status_mirror import MIRROR_DELAY, StatusMirror
from controller.operator.trigger_secrets import KeyHolder, SecretAppeared, TriggerSecrets
from controller.receiver_set import ReceiverSet
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler

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


def register(registry: kopf.OperatorRegistry, deps: OperatorDeps) -> ReceiverHandlers:
    """Register every handler on ``registry`` (one per operator instance, never kopf's global one).

    None of them needs a finalizer (no delete handler, no timer or daemon)."""
    handlers = ReceiverHandlers(deps)
    kopf.on.resume(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
    kopf.on.create(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
    kopf.on.update(GROUP, VERSION, "receivers", id="receiver", registry=registry)(handlers.changed)
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

    async def resync(self) -> None:
        """One pass over every Receiver; one that fails is logged and left for the next pass."""
        for obj in await self.deps.client.list(RECEIVERS):
            if obj["metadata"].get("deletionTimestamp"):
                continue
            key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
            try:
                if await self.grants.recheck(obj):
                    await self.grants.grant(obj)
            except (KubeError, SecretAppeared) as e:
                logger.warning("resync of receiver %s: %s", key, e)
            except Exception:
                # The pass must go on: one Receiver's unexpected failure must not stop the others'.
                logger.exception("resync of receiver %s failed", key)

    async def resyncing(self, interval: float, active: Callable[[], Awaitable[bool]]) -> None:
        """``resync`` every ``interval`` seconds while ``active()`` says this replica handles Receivers,
        until cancelled; a failed list waits for the next pass."""
        while True:
            await asyncio.sleep(interval)
            try:
                if await active():
                    await self.resync()
            except KubeError as e:
                logger.warning("resync: could not list the receivers or read the peering: %s", e)
