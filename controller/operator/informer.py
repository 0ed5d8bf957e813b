"""Every replica's view of the Receivers: a list-and-watch loop that fills the ``ReceiverSet``.

kopf runs its handlers only in the active replica (peering pauses the others), but every replica's
listener must answer hits, and must refuse a token the moment it is revoked. So each replica keeps
its own receiver_set from the API, independent of kopf: a Receiver grants hits when its spec checks out,
it is not being deleted, and its status names a token (``status.tokenId``, written by the active
replica after it wrote the token's Secret). A token whose id is not the current one is superseded
(403); a deleted or deleting Receiver revokes it (403) as soon as the watch event arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from controller.drivers.contract import Driver
from controller.kube.client import RECEIVERS, KubeClient, KubeObject
from controller.kube.errors import KubeError
from controller.model import ActiveReceiver
from controller.operator.receiver_status import refusal_shown
from controller.receiver_set import ReceiverSet
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema

logger = logging.getLogger(__name__)


def active_from_object(
    obj: Mapping[str, Any], drivers: Mapping[str, Driver], schema: ReceiverSchema
) -> ActiveReceiver | None:
    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp") or not status.get("tokenId") or not metadata.get("uid"):
        return None
    receiver, problems = check_object(obj, drivers, schema)
    if receiver is None or problems:
        return None
    return ActiveReceiver(
        receiver=receiver,
        uid=str(metadata["uid"]),
        jti=str(status["tokenId"]),
        token="",  # the token itself is only in the Secret; the listener needs just its id
        kid=str(status.get("tokenKid") or ""),
        refusal=refusal_shown(status),
    )


class ReceiverInformer:
    def __init__(
        self,
        client: KubeClient,
        receiver_set: ReceiverSet,
        drivers: Mapping[str, Driver],
        schema: ReceiverSchema,
        *,
        retry_delay: float = 1.0,
    ) -> None:
        self._client = client
        self._receiver_set = receiver_set
        self._drivers = drivers
        self._schema = schema
        self._retry_delay = retry_delay

    async def run(self) -> None:
        while True:
            try:
                version = await self.relist()
                async for event in self._client.watch(RECEIVERS, resource_version=version):
                    if event.get("type") == "ERROR":
                        break  # e.g. 410 Gone: the version expired; list again
                    if event.get("type") == "DELETED":
                        self._forget(event.get("object") or {})
                    elif event.get("type") in ("ADDED", "MODIFIED"):
                        self.apply(event.get("object") or {})
            except KubeError as e:
                logger.warning("watching Receivers failed, retrying in %.0fs: %s", self._retry_delay, e)
                await asyncio.sleep(self._retry_delay)

    async def relist(self) -> str | None:
        """Replace the receiver set's contents with what the API holds now; returns the list's version."""
        body = await self._client.get(RECEIVERS)
        seen = set()
        for obj in body.get("items") or []:
            seen.add(self.apply(obj))
        for key in self._receiver_set.keys() - seen:
            self._receiver_set.remove(key)
        self._receiver_set.loaded = True
        version = (body.get("metadata") or {}).get("resourceVersion")
        return version if isinstance(version, str) and version.isdigit() else None

    def apply(self, obj: KubeObject) -> str:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        active = active_from_object(obj, self._drivers, self._schema)
        if active is None:
            if self._receiver_set.remove(key) is not None:
                logger.info("receiver %s no longer grants hits", key)
        else:
            previous = self._receiver_set.get(key)
            self._receiver_set.put(active)
            if previous is None or previous.jti != active.jti:
                logger.info("receiver %s grants hits with token %s", key, active.jti)
        return key

    def _forget(self, obj: KubeObject) -> None:
        meta = obj.get("metadata") or {}
        if self._receiver_set.remove(f"{meta.get('namespace')}/{meta.get('name')}") is not None:
            logger.info(
                "receiver %s/%s deleted; its token is revoked", meta.get("namespace"), meta.get("name")
            )
