"""A Receiver's token in operator mode: minted, kept or re-minted, and handed out in a Secret.

The Secret ``<receiver>-trigger`` holds the token and its URL; its annotations record what the token
was issued for, so the token is kept or re-minted by the same rule as in standalone mode
(``controller.receivers.remint``) — nothing of it is kept anywhere else. Only here can a Secret lose
its token (someone edited it): then a new one is minted too.

The Secret is owned by its Receiver, so Kubernetes deletes it with it; ``delete`` still removes it
at once, from the deletion handler, so the URL stops being readable before the finalizer is released.
A changed public URL setting rewrites the URL around the same token: the token names the receiver,
not where it is reached.
"""

from __future__ import annotations

import base64
import contextlib
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

    async def delete(self, namespace: str, receiver_name: str) -> None:
        """Delete the Receiver's trigger Secret; one already gone is fine."""
        with contextlib.suppress(KubeNotFound):
            await self._client.delete(SECRETS.named(secret_name(receiver_name), namespace))


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
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "data": {"url": _b64(url), "token": _b64(token)},
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
