"""Every replica's view of the Receivers: a list-and-watch loop that fills the ``ReceiverSet``.

kopf runs its handlers only in the active replica (peering pauses the others), but every replica's
listener must answer hits, and must refuse a token the moment it is revoked. So each replica keeps
its own receiver_set from the API, independent of kopf: a Receiver grants hits when its spec checks out,
it is not being deleted, and its status names a token (``status.tokenId``, written by the active
replica after it wrote the token's Secret). A token whose id is not the current one is superseded
(403); a deleted or deleting Receiver revokes it (403) as soon as the watch event arrives.

The loop is supervised: a replica whose view silently stopped following the API would go on accepting
revoked tokens while it looks healthy. So *any* failure of a list or a watch (an API error, but also a
line that is not JSON, a line longer than aiohttp reads, a bug) is logged once, marks the view unsynced
— ``unready_reason`` makes ``/readyz`` fail, so a load balancer sends the replica no hits — and the loop
lists again after a capped exponential backoff (``controller.backoff``). The view is synced again only
once a relist has replaced it whole. Only cancellation ends the loop.

What is not a failure, as client-go's reflector treats it: a watch the server ends (it does at
``timeoutSeconds``) is resumed from the last version seen; a version the server has compacted away
(410 Gone, as an HTTP answer or as an ERROR event in the stream) is answered by a relist.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, cast

from controller.backoff import Backoff
from controller.drivers.contract import Driver
from controller.kube.client import RECEIVERS, KubeClient, KubeObject
from controller.kube.errors import KubeError
from controller.model import ActiveReceiver
from controller.operator.receiver_status import refusal_shown
from controller.receiver_set import ReceiverSet
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema
from controller.redact import mask_url

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


GONE = 410  # the watch's resourceVersion is older than what the server keeps: list again


class ReceiverInformer:
    def __init__(
        self,
        client: KubeClient,
        receiver_set: ReceiverSet,
        drivers: Mapping[str, Driver],
        schema: ReceiverSchema,
        *,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._receiver_set = receiver_set
        self._drivers = drivers
        self._schema = schema
        self._backoff = backoff if backoff is not None else Backoff()
        self._sleep = sleep
        self._synced = asyncio.Event()
        self._unsynced_reason = "the Receivers have not been listed yet"

    def unready_reason(self) -> str | None:
        """For ``/readyz``: None while the view follows the API, else why it may be stale."""
        return None if self._synced.is_set() else self._unsynced_reason

    async def synced(self) -> None:
        """Wait until a list has filled the view (at once when it is synced)."""
        await self._synced.wait()

    async def run(self) -> None:
        """List, then follow the watch, until cancelled; every failure is logged and retried."""
        failures = 0
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self.relist()
                    self._synced.set()
                version = await self._follow(version)
                failures = 0  # the watch ended as watches do: the API is answering again
            except asyncio.CancelledError:
                raise
            except Exception as e:  # whatever broke the loop, the view must come back
                failures += 1
                version = None
                self._synced.clear()
                self._unsynced_reason = f"following the Receivers failed, relisting: {_describe(e)}"
                delay = self._backoff.delay(failures, getattr(e, "retry_after", None))
                logger.warning(
                    "following the Receivers failed (%d in a row), listing again in %.1fs: %s",
                    failures,
                    delay,
                    _describe(e),
                )
                await self._sleep(delay)

    async def _follow(self, version: str | None) -> str | None:
        """Apply one watch's events until the server ends it; the version to resume from (None: relist)."""
        try:
            watch = self._client.watch(RECEIVERS, resource_version=version)
            async with contextlib.aclosing(cast(AsyncGenerator[KubeObject], watch)) as events:
                async for event in events:
                    obj = event.get("object") or {}
                    kind = event.get("type")
                    if kind == "ERROR":
                        if obj.get("code") == GONE:
                            logger.info("the Receivers' watch version %s expired; listing again", version)
                            return None
                        raise KubeError(
                            f"the Receivers' watch sent an error: {obj.get('code')} {obj.get('reason')}: "
                            f"{str(obj.get('message'))[:200]}"
                        )
                    if kind == "DELETED":
                        self._forget(obj)
                    elif kind in ("ADDED", "MODIFIED"):
                        self.apply(obj)
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
        except KubeError as e:
            if e.status != GONE:
                raise
            logger.info("the Receivers' watch version %s expired; listing again", version)
            return None
        return version

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


def _describe(error: BaseException) -> str:
    """One line for a log or a probe: the error's type and its first 200 characters, URLs masked."""
    return f"{type(error).__name__}: {mask_url(str(error))[:200]}"
