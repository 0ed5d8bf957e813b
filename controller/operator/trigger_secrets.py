"""A Receiver's token in operator mode: minted, kept or re-minted, and handed out in a Secret.

The Secret ``<receiver>-trigger`` holds the token and its URL; its annotations record what the token
was issued for, so the token is kept or re-minted by the same rule as in standalone mode
(``controller.receivers.remint``) — nothing of it is kept anywhere else. Only here can a Secret lose
its token (someone edited it): then a new one is minted too.

The Secret is owned by its Receiver, so Kubernetes' garbage collector deletes it with it, and the
operator never deletes one itself: the token stops being accepted the moment every replica's informer
sees the Receiver go, so nothing needs to hold the Receiver back (no finalizer). The owner reference
leaves ``blockOwnerDeletion`` out: setting it needs ``update`` on ``receivers/finalizers`` where
OwnerReferencesPermissionEnforcement is on, and nothing here needs a foreground deletion to wait.

Only a Secret this operator wrote for this very Receiver is ever replaced: one that lacks the
Receiver's uid in its owner references or in its ``receiver-uid`` annotation belongs to someone else
(or to an earlier Receiver of the same name, until the garbage collector removes it), and is left
untouched; ``SecretNameTaken`` says so, and the Receiver gets no token.

A changed public URL setting rewrites the URL around the same token: the token names the receiver,
not where it is reached.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from controller.errors import WebhookServiceError
from controller.kube.client import SECRETS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeNotFound
from controller.model import API_VERSION, KIND, Receiver
from controller.receivers.remint import Issued, remint_reason
from controller.tokens import KeyRing, mint_token, trigger_url

logger = logging.getLogger(__name__)

A = "webhook-service.dev/"  # the prefix of the Secret's labels and annotations
SECRET_SUFFIX = "-trigger"


class SecretAppeared(WebhookServiceError):
    """The trigger Secret was created by someone else between reading and creating it: try again."""

    retryable = True


class SecretNameTaken(WebhookServiceError):
    """The trigger Secret's name is held by a Secret this operator did not write for this Receiver."""


@dataclass
class KeyHolder:
    """The current key ring; replaced when the keys Secret changes (``KeyWatcher``)."""

    keyring: KeyRing


@dataclass(frozen=True)
class TriggerToken:
    """The token a Receiver's Secret holds now: its id, the key that signed it, and whether it was
    minted by this call."""

    jti: str
    kid: str
    minted: bool


def secret_name(receiver_name: str) -> str:
    return f"{receiver_name}{SECRET_SUFFIX}"


class TriggerSecrets:
    def __init__(
        self, client: KubeClient, keys: KeyHolder, *, base_url: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._client = client
        self._keys = keys
        self._base_url = base_url
        self._clock = clock

    async def ensure(self, receiver: Receiver, uid: str) -> TriggerToken:
        """The Receiver's current token, minted (and its Secret written) when it can't stay."""
        ref = SECRETS.named(secret_name(receiver.name), receiver.namespace)
        try:
            secret: KubeObject | None = await self._client.get(ref)
        except KubeNotFound:
            secret = None
        if secret is not None and not owned_by(secret, uid):
            raise SecretNameTaken(
                f"Secret {secret_name(receiver.name)} exists and was not written by webhook-service for this"
                " Receiver: rename or delete it"
            )
        keyring = self._keys.keyring
        issued = issued_in(secret)
        reason = remint_reason(issued, receiver, keyring.kids)
        if secret is not None and issued is not None and reason is None:
            token = base64.b64decode(secret["data"]["token"]).decode()
            url = trigger_url(self._base_url, token, receiver.target.project_id)
            if base64.b64decode(secret["data"].get("url", "")).decode() != url:
                secret["data"]["url"] = _b64(url)  # the public URL setting changed: same token, new URL
                await self._client.replace(ref, secret)
            return TriggerToken(issued.jti, issued.kid, minted=False)
        jti = uuid.uuid4().hex
        token, kid = mint_token(keyring, receiver=receiver, uid=uid, jti=jti, now=self._clock())
        body = secret_body(
            receiver, uid, token, jti, kid, trigger_url(self._base_url, token, receiver.target.project_id)
        )
        if secret is None:
            try:
                await self._client.create(ref, body)
            except KubeConflict as e:
                raise SecretAppeared("the trigger Secret appeared meanwhile") from e
        else:
            body["metadata"]["resourceVersion"] = secret["metadata"]["resourceVersion"]
            await self._client.replace(ref, body)
        logger.info("receiver %s: minted token %s (key %s): %s", receiver.key, jti, kid, reason)
        return TriggerToken(jti, kid, minted=True)


def owned_by(secret: KubeObject, uid: str) -> bool:
    """Whether ``secret`` was written by this operator for the Receiver ``uid``: both marks must say so."""
    meta = secret.get("metadata") or {}
    owners = {ref.get("uid") for ref in meta.get("ownerReferences") or [] if ref.get("kind") == KIND}
    return uid in owners and (meta.get("annotations") or {}).get(A + "receiver-uid") == uid


def issued_in(secret: KubeObject | None) -> Issued | None:
    """What the Secret's token was issued for; None when the Secret holds no token, or does not say."""
    if secret is None or not (secret.get("data") or {}).get("token"):
        return None
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    jti, kid, uid, target, generation = (
        annotations.get(A + key)
        for key in ("token-id", "token-kid", "receiver-uid", "target", "token-generation")
    )
    if jti is None or kid is None or uid is None or target is None or generation is None:
        return None
    return Issued(jti=jti, kid=kid, uid=uid, target_id=target, token_generation=generation)


def secret_body(receiver: Receiver, uid: str, token: str, jti: str, kid: str, url: str) -> KubeObject:
    """The trigger Secret: the token and its URL, what they were issued for, owned by the Receiver."""
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
                A + "receiver-uid": uid,
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": receiver.name,
                    "uid": uid,
                    "controller": True,
                }
            ],
        },
        "data": {"url": _b64(url), "token": _b64(token)},
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
