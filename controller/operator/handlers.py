"""The kopf handlers: Receivers in, trigger Secrets and status out; ledgers in, reconciles out.

They run only in the active replica (kopf peering pauses the others), which makes that replica the
only one that mints tokens, writes status, and folds intents; every replica's listener still
accepts hits (see ``controller.operator.informer``).

- create / update / resume: check the spec (the API server has checked the schema; the driver's
  checks run here), mint a token when there is none or the token-generation annotation or the
  target changed, write it with its URL into the Secret ``<receiver>-trigger`` (owned by the
  Receiver, so Kubernetes deletes it with it), and set status and Events. The URL never goes into
  status, which more people may read than Secrets.
- delete: kopf's finalizer holds the object until the token is revoked and the Secret deleted.
- timer: a periodic resync per Receiver — wake its target's reconcile, re-check HPA conflicts.
- ledger events: an accepted hit recorded by any replica shows up as a change of its target's
  IntentLedger; the active replica wakes that target and mirrors the last hit and scale to status.

Handler failures from the API are raised as ``kopf.TemporaryError``: kopf retries them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf

from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverSet, GateRefusal
from controller.kube.client import SECRETS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound
from controller.model import Receiver
from controller.operator.status import now_rfc3339, post_event, set_condition, update_status
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler
from controller.registry import ReceiverRegistry
from controller.store import ledger as ledgers
from controller.store.base import HitRecord
from controller.tokens import KeyRing, mint_token, trigger_url

logger = logging.getLogger(__name__)

GROUP, VERSION = "webhook-service.dev", "v1"
A = "webhook-service.dev/"
SECRET_SUFFIX = "-trigger"
MIRROR_DELAY = 0.25  # seconds a receiver's status lags its ledger, at most, under a burst of hits


@dataclass
class KeyHolder:
    """The current key ring; replaced when the keys Secret changes (``KeyWatcher``)."""

    keyring: KeyRing


@dataclass(frozen=True)
class OperatorDeps:
    client: KubeClient
    keys: KeyHolder
    registry: ReceiverRegistry
    reconciler: Reconciler
    drivers: DriverSet
    schema: ReceiverSchema
    base_url: str
    namespace: str  # the operator's own: ledgers and the keys Secret live there
    clock: Callable[[], float] = time.time


def secret_name(receiver_name: str) -> str:
    return f"{receiver_name}{SECRET_SUFFIX}"


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
        # Status mirrors of ledgers, coalesced per receiver: under a burst of hits a receiver's
        # status is written once per MIRROR_DELAY with the latest ledger, not once per hit.
        self._mirrors: dict[str, ledgers.Ledger] = {}
        self._mirror_tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, str] = {}  # receiver -> the failed hit last reported as an Event
        self._shown: dict[str, tuple[Any, ...]] = {}  # receiver -> what was last mirrored to its status

    async def close(self) -> None:
        tasks = list(self._mirror_tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def changed(self, body: kopf.Body, **_: Any) -> None:
        obj: KubeObject = dict(body)
        try:
            await self._reconcile(obj)
        except KubeError as e:
            raise kopf.TemporaryError(f"Kubernetes API: {e}", delay=5) from e

    async def _reconcile(self, obj: KubeObject) -> None:
        meta = obj["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation") or 0)
        receiver, problems = check_object(obj, self.deps.drivers, self.deps.schema)
        if receiver is None:
            message = "; ".join(
                str(p).removeprefix("<input>: ").removeprefix("kubernetes[0]: ") for p in problems
            )

            def invalid(_: KubeObject, status: dict[str, Any]) -> None:
                status.update(observedGeneration=generation, problems=[message], tokenId=None)
                set_condition(status, "Ready", "False", "InvalidSpec", message, generation)
                set_condition(
                    status, "TokenIssued", "False", "InvalidSpec", "no token for an invalid spec", generation
                )

            await update_status(self.deps.client, namespace, name, invalid)
            await post_event(self.deps.client, obj, "Warning", "InvalidSpec", message)
            logger.warning("receiver %s/%s is invalid: %s", namespace, name, message)
            return

        jti, kid, minted = await self._ensure_token(obj, receiver)
        refusal = await self._refusal(receiver)
        action = self.deps.drivers[receiver.driver].action(receiver.spec)

        def valid(_: KubeObject, status: dict[str, Any]) -> None:
            status.pop("problems", None)
            status.update(
                observedGeneration=generation,
                secretName=secret_name(name),
                tokenId=jti,
                tokenKid=kid,
                target=receiver.target.id,
                action=action,
            )
            issued = "TokenIssued" if minted else "TokenCurrent"
            set_condition(
                status,
                "TokenIssued",
                "True",
                issued,
                f"trigger URL in Secret {secret_name(name)}",
                generation,
            )
            if refusal is not None:
                set_condition(status, "Ready", "False", refusal.reason, refusal.message, generation)
            else:
                set_condition(
                    status, "Ready", "True", "Ready", "hits on the trigger URL act on the target", generation
                )
            if not any(c["type"] == "TargetReachable" for c in status.get("conditions") or []):
                set_condition(
                    status, "TargetReachable", "Unknown", "NotYetReconciled", "no hit folded yet", generation
                )

        await update_status(self.deps.client, namespace, name, valid)
        if minted:
            await post_event(
                self.deps.client,
                obj,
                "Normal",
                "TokenIssued",
                f"trigger URL written to Secret {secret_name(name)} (token {jti})",
            )
        if refusal is not None:
            await post_event(self.deps.client, obj, "Warning", refusal.reason, refusal.message)

    async def _ensure_token(self, obj: KubeObject, receiver: Receiver) -> tuple[str, str, bool]:
        """The current token's (jti, kid, whether it was minted now); writes the Secret when needed."""
        meta = obj["metadata"]
        ref = SECRETS.named(secret_name(receiver.name), receiver.namespace)
        try:
            secret: KubeObject | None = await self.deps.client.get(ref)
        except KubeNotFound:
            secret = None
        annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
        keyring = self.deps.keys.keyring
        current = (
            secret is not None
            and annotations.get(A + "receiver-uid") == meta["uid"]
            and annotations.get(A + "token-generation") == receiver.token_generation
            and annotations.get(A + "target") == receiver.target.id
            and annotations.get(A + "token-kid") in keyring.kids
            and bool((secret.get("data") or {}).get("token"))
        )
        if current and secret is not None:
            token = base64.b64decode(secret["data"]["token"]).decode()
            url = trigger_url(self.deps.base_url, token, receiver.target.project_id)
            if base64.b64decode(secret["data"].get("url", "")).decode() != url:
                secret["data"]["url"] = _b64(url)  # the public URL setting changed: same token, new URL
                await self.deps.client.replace(ref, secret)
            return annotations[A + "token-id"], annotations[A + "token-kid"], False
        jti = uuid.uuid4().hex
        token, kid = mint_token(keyring, receiver=receiver, uid=meta["uid"], jti=jti, now=self.deps.clock())
        body = self._secret(obj, receiver, token, jti, kid)
        if secret is None:
            try:
                await self.deps.client.create(ref, body)
            except KubeConflict:
                raise kopf.TemporaryError("the trigger Secret appeared meanwhile", delay=1) from None
        else:
            body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
            await self.deps.client.replace(ref, body)
        logger.info("receiver %s: minted token %s (key %s)", receiver.key, jti, kid)
        return jti, kid, True

    def _secret(self, obj: KubeObject, receiver: Receiver, token: str, jti: str, kid: str) -> KubeObject:
        meta = obj["metadata"]
        url = trigger_url(self.deps.base_url, token, receiver.target.project_id)
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": secret_name(receiver.name),
                "namespace": receiver.namespace,
                "labels": {A + "receiver": receiver.name, "app.kubernetes.io/managed-by": "webhook-service"},
                "annotations": {
                    A + "token-id": jti,
                    A + "token-kid": kid,
                    A + "token-generation": receiver.token_generation,
                    A + "target": receiver.target.id,
                    A + "receiver-uid": meta["uid"],
                },
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Receiver",
                        "name": receiver.name,
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "data": {"url": _b64(url), "token": _b64(token)},
        }

    async def _refusal(self, receiver: Receiver) -> GateRefusal | None:
        gate = self.deps.drivers.gates.get(receiver.driver)
        if gate is None:
            return None
        return await gate.refusal(receiver.target, DriverContext(cattle=None, kube=self.deps.client))

    async def deleted(self, body: kopf.Body, **_: Any) -> None:
        meta = body["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        self.deps.registry.remove(key)  # every replica's informer drops it on deletionTimestamp too
        try:
            await self.deps.client.delete(SECRETS.named(secret_name(meta["name"]), meta["namespace"]))
        except KubeNotFound:
            pass
        except KubeError as e:
            raise kopf.TemporaryError(f"could not delete the trigger Secret: {e}", delay=5) from e
        logger.info("receiver %s deleted: token revoked, Secret %s deleted", key, secret_name(meta["name"]))

    async def resync(self, body: kopf.Body, **_: Any) -> None:
        obj: KubeObject = dict(body)
        receiver, _problems = check_object(obj, self.deps.drivers, self.deps.schema)
        if receiver is None:
            return
        self.deps.reconciler.wake(receiver.target.id)
        if receiver.driver in self.deps.drivers.gates:
            ready = next(
                (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None
            )
            refused_now = (await self._refusal(receiver)) is not None
            # A valid receiver's Ready is False only while its target is refused.
            refused_before = ready is not None and ready.get("status") == "False"
            if refused_now != refused_before:
                await self.changed(body)

    async def ledger_changed(self, body: kopf.Body, **_: Any) -> None:
        target = str((body.get("spec") or {}).get("target") or "")
        if not target:
            return
        led = ledgers.from_json(body.get("ledger"), target)
        if ledgers.has_work(led):
            self.deps.reconciler.wake(target)
        for key, entry in led["receivers"].items():
            # What status shows of this ledger; a ledger event that changes none of it (another
            # receiver's hit, a receiver long gone) costs no API call.
            shown = (entry.get("lastHit"), led["desired"], led["observed"], led["lastError"])
            if self._shown.get(key) == shown:
                continue
            self._shown[key] = shown
            self._mirrors[key] = led
            if key not in self._mirror_tasks:
                self._mirror_tasks[key] = asyncio.create_task(self._mirror(key), name=f"status {key}")

    async def _mirror(self, key: str) -> None:
        namespace, _sep, name = key.partition("/")
        try:
            while key in self._mirrors:
                await asyncio.sleep(MIRROR_DELAY)
                led = self._mirrors.pop(key)
                hit = ledgers.last_hits(led).get(key)
                if hit is None:
                    continue
                try:
                    receiver = await update_status(self.deps.client, namespace, name, _mirror(led, hit))
                except KubeError as e:
                    logger.warning("could not update the status of %s: %s", key, e)
                    self._shown.pop(key, None)  # so the next ledger event tries again
                    continue
                if (
                    receiver is not None
                    and hit.intent_state == "failed"
                    and self._failed.get(key) != hit.hit_id
                ):
                    self._failed[key] = hit.hit_id
                    message = f"hit {hit.hit_id} failed on {led['target']}: {hit.reason}"
                    await post_event(self.deps.client, receiver, "Warning", "HitFailed", message)
        finally:
            # No await between the loop's last check and this: a new ledger can't slip in between.
            self._mirror_tasks.pop(key, None)


def _mirror(led: ledgers.Ledger, hit: HitRecord) -> Callable[[KubeObject, dict[str, Any]], None]:
    """What the ledger tells a receiver's status: its last hit, the scale, the target's health."""

    def change(obj: KubeObject, status: dict[str, Any]) -> None:
        if status.get("target") != led["target"]:
            return  # the receiver has moved to another target since
        generation = int(obj["metadata"].get("generation") or 0)
        previous = status.get("lastHit") or {}
        if previous.get("hit", "") > hit.hit_id:
            return  # another target's ledger (before a target change) must not roll it back
        last_hit = {"time": now_rfc3339(hit.received_at), "outcome": hit.outcome, "hit": hit.hit_id}
        if hit.intent_state == "failed" and hit.reason:
            last_hit["error"] = hit.reason
        status["lastHit"] = last_hit
        status["scale"] = {"desired": led["desired"], "observed": led["observed"]}
        if led["lastError"]:
            set_condition(status, "TargetReachable", "False", "TargetError", led["lastError"], generation)
        elif led["observed"] is not None:
            message = f"{led['target']} at scale {led['observed']}"
            set_condition(status, "TargetReachable", "True", "Reconciled", message, generation)

    return change


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
