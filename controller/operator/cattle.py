"""Cattle clients from ``spec.cattleSecretRef``: a Secret (``url``, ``accessKey``, ``secretKey``) in the
receiver's namespace, read when its target is reconciled.

The Secret is read on every pass rather than cached, so rotated credentials are used from the next
pass on; clients are cached per (url, keys), so an unchanged Secret reuses its connection pool. A
missing or incomplete Secret fails the target's intents with a message naming it (``TargetRefused``):
retrying cannot fix it, a person must.
"""

from __future__ import annotations

import base64

import aiohttp

from controller.cattle.client import CattleClient
from controller.drivers.base import CATTLE_SECRET_CLAIM, TargetRefused
from controller.kube.client import SECRETS, KubeClient
from controller.kube.errors import KubeNotFound
from controller.metrics import Metrics
from controller.model import Target

REQUIRED_KEYS = ("url", "accessKey", "secretKey")


class SecretCattleClients:
    def __init__(
        self, kube: KubeClient, session: aiohttp.ClientSession, metrics: Metrics, *, timeout: float
    ) -> None:
        self._kube = kube
        self._session = session
        self._metrics = metrics
        self._timeout = timeout
        self._clients: dict[tuple[str, str, str], CattleClient] = {}

    async def for_target(self, target: Target) -> CattleClient:
        namespace, _, name = target.claims[CATTLE_SECRET_CLAIM].partition("/")
        try:
            secret = await self._kube.get(SECRETS.named(name, namespace))
        except KubeNotFound:
            raise TargetRefused(f"the Cattle credentials Secret {namespace}/{name} does not exist") from None
        data = secret.get("data") or {}
        missing = [key for key in REQUIRED_KEYS if not data.get(key)]
        if missing:
            raise TargetRefused(f"the Secret {namespace}/{name} lacks {', '.join(missing)}")
        try:
            url, access, secret_key = (
                base64.b64decode(data[key], validate=True).decode().strip() for key in REQUIRED_KEYS
            )
        except (ValueError, TypeError):  # binascii.Error and UnicodeDecodeError are ValueErrors
            raise TargetRefused(
                f"the Secret {namespace}/{name} holds a value that is not base64 text"
            ) from None
        client = self._clients.get((url, access, secret_key))
        if client is None:
            client = CattleClient(
                self._session,
                base_url=url.rstrip("/"),
                access_key=access,
                secret_key=secret_key,
                timeout=self._timeout,
                metrics=self._metrics,
            )
            self._clients[(url, access, secret_key)] = client
        return client
