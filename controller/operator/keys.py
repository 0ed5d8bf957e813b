"""Signing keys in a Secret of the operator's namespace, so every replica signs and verifies alike.

The first replica to start creates the Secret with one key; a replica that loses that race gets 409
and reads the winner's. Rotation (``webhook-service keys rotate --kubernetes``) adds a key to the
Secret; replicas re-read it periodically (``KeyWatcher``), the newest key signs from then on and every
key in the Secret keeps verifying, so existing trigger URLs work until their key is removed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable

from controller.kube.client import SECRETS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound
from controller.tokens import KeyRing, TokenVerifier

logger = logging.getLogger(__name__)

KEYS_SECRET = "webhook-service-signing-keys"


async def load_or_create_keyring(client: KubeClient, namespace: str) -> KeyRing:
    ref = SECRETS.named(KEYS_SECRET, namespace)
    for _ in range(3):
        try:
            return _keyring(await client.get(ref))
        except KubeNotFound:
            pass
        name, pem = KeyRing.new_key()
        try:
            created = await client.create(ref, _secret(namespace, {name: pem}))
            logger.info("created the signing keys Secret %s/%s", namespace, KEYS_SECRET)
            return _keyring(created)
        except KubeConflict:
            continue  # another replica created it first: read theirs
    raise KubeError(f"could not read or create the Secret {namespace}/{KEYS_SECRET}")


async def add_key(client: KubeClient, namespace: str) -> str:
    """Add a new newest key to the Secret (compare-and-swap); returns its kid."""
    ref = SECRETS.named(KEYS_SECRET, namespace)
    await load_or_create_keyring(client, namespace)
    while True:
        secret = await client.get(ref)
        name, pem = KeyRing.new_key()
        secret.setdefault("data", {})[name] = base64.b64encode(pem).decode()
        try:
            await client.replace(ref, secret)
            return name.removesuffix(".pem")
        except KubeConflict:
            continue


def _keyring(secret: KubeObject) -> KeyRing:
    data = secret.get("data") or {}
    return KeyRing.from_pems({name: base64.b64decode(value) for name, value in data.items()})


def _secret(namespace: str, pems: dict[str, bytes]) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": KEYS_SECRET,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "webhook-service"},
        },
        "data": {name: base64.b64encode(pem).decode() for name, pem in pems.items()},
    }


class KeyWatcher:
    """Re-reads the keys Secret every ``interval`` seconds and switches signer and verifier to it."""

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        verifier: TokenVerifier,
        on_change: Callable[[KeyRing], None],
        current: KeyRing,
        interval: float = 30.0,
    ) -> None:
        self._client, self._namespace = client, namespace
        self._verifier, self._on_change = verifier, on_change
        self._kids = current.kids
        self._interval = interval

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                keyring = await load_or_create_keyring(self._client, self._namespace)
            except (KubeError, ValueError) as e:
                logger.warning("could not re-read the signing keys: %s", e)
                continue
            if keyring.kids != self._kids:
                logger.info("signing keys changed: %s", ", ".join(keyring.kids))
                self._kids = keyring.kids
                self._verifier.use(keyring)
                self._on_change(keyring)
