"""The receivers API's store in operator mode: each receiver the API creates is a Receiver object in the
namespace its Cattle project maps to.

A Cattle project id names no Kubernetes namespace, so the cluster says which one holds a project's
receivers: the Namespace labelled ``webhook-service.dev/project-id: <projectId>``. Exactly one must
carry the label; with none or several the API answers 400 and says how to fix it, instead of guessing
(a receiver acts in its own namespace: a scaleWorkload receiver scales that namespace's workloads).

The objects the API creates carry the label ``webhook-service.dev/created-by: receivers-api``, their
project id in the same label the Namespace has, and the Rancher name in the annotation the folder
store uses. List, get and delete see only those objects, so a Receiver applied by hand is for kubectl
to change, as a hand-written file is in ``run``. An object being deleted is already gone for the API.

The store keeps the interface's promise (``controller.receivers.api_store``) with the receiver set
this replica's informer fills. A create answers once the receiver is active there: the active replica
(kopf) mints its token into the Secret ``<name>-trigger``, then writes ``status.tokenId``, and the
informer adds it. The wait is bounded (``settle_timeout``). When it runs out, the object is deleted
again, so a failed create leaves nothing behind and can simply be retried. The trigger URL is read
from that Secret, the only place it is kept, and only while the Secret's token is the one the receiver
set accepts. A delete answers once the informer has dropped the receiver: its token is refused from
then on, and the garbage collector deletes its Secret.

The receiver set has no change notifications, so the waits poll it; it is in memory, so a poll
costs nothing.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Mapping
from typing import Any

from controller.kube.client import NAMESPACES, RECEIVERS, SECRETS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound
from controller.model import ActiveReceiver
from controller.operator.trigger_secrets import issued_in, secret_name
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import (
    ApiReceiver,
    ApiStoreUnavailable,
    DuplicateReceiver,
    NotSettled,
    ProjectUnmapped,
    from_manifest,
    manifest,
)
from controller.receivers.loader import DNS1123_LABEL

PROJECT_LABEL = "webhook-service.dev/project-id"
CREATED_BY_LABEL = "webhook-service.dev/created-by"
CREATED_BY = "receivers-api"
SETTLE_TIMEOUT = 10.0  # seconds a create or delete waits for the receiver set to show it
POLL_INTERVAL = 0.05

logger = logging.getLogger(__name__)


class KubeApiReceivers:
    """``ApiReceiverStore`` over Receiver objects (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        receiver_set: ReceiverSet,
        *,
        settle_timeout: float = SETTLE_TIMEOUT,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        self._client = client
        self._receiver_set = receiver_set
        self._settle_timeout = settle_timeout
        self._poll_interval = poll_interval

    async def write(
        self, project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]
    ) -> ApiReceiver:
        namespace = await self.namespace_of(project_id)
        body = receiver_object(project_id, namespace, receiver_id, name, spec)
        try:
            await self._client.create(RECEIVERS.within(namespace), body)
        except KubeConflict as e:
            raise DuplicateReceiver(f"Receiver {namespace}/{receiver_id} exists already") from e
        except KubeError as e:
            raise unavailable(e) from e
        driver = str(spec["driver"])
        stored = ApiReceiver(project_id, namespace, receiver_id, name, driver, spec[f"{driver}Config"])
        if not await self._settled(lambda: self._receiver_set.get(stored.key) is not None):
            try:
                await self._client.delete(RECEIVERS.named(receiver_id, namespace))
            except KubeError as e:
                logger.warning("could not delete Receiver %s again: %s", stored.key, e)
            raise NotSettled(
                f"it was not active within {self._settle_timeout:g}s (is an operator replica active?), "
                "so it was deleted again"
            )
        return stored

    async def remove(self, receiver: ApiReceiver) -> None:
        try:
            await self._client.delete(RECEIVERS.named(receiver.id, receiver.namespace))
        except KubeNotFound:
            pass
        except KubeError as e:
            raise unavailable(e) from e
        if not await self._settled(lambda: self._receiver_set.get(receiver.key) is None):
            raise NotSettled(f"its URL still worked {self._settle_timeout:g}s after the Receiver was deleted")

    async def get(self, project_id: str, receiver_id: str) -> ApiReceiver | None:
        if not DNS1123_LABEL.match(receiver_id):
            return None  # also keeps a crafted id from naming another path of the API
        namespace = await self.namespace_of(project_id)
        try:
            obj = await self._client.get(RECEIVERS.named(receiver_id, namespace))
        except KubeNotFound:
            return None
        except KubeError as e:
            raise unavailable(e) from e
        return api_receiver(obj, project_id)

    async def in_project(self, project_id: str) -> list[ApiReceiver]:
        namespace = await self.namespace_of(project_id)
        selector = f"{CREATED_BY_LABEL}={CREATED_BY},{PROJECT_LABEL}={project_id}"
        try:
            objs = await self._client.list(RECEIVERS.within(namespace), label_selector=selector)
        except KubeError as e:
            raise unavailable(e) from e
        found = (api_receiver(obj, project_id) for obj in objs)
        return sorted((r for r in found if r is not None), key=lambda r: r.id)

    async def url(self, receiver: ApiReceiver, active: ActiveReceiver) -> str | None:
        try:
            secret = await self._client.get(SECRETS.named(secret_name(receiver.id), receiver.namespace))
        except KubeNotFound:
            return None
        except KubeError as e:
            raise unavailable(e) from e
        issued = issued_in(secret)
        url = (secret.get("data") or {}).get("url")
        if issued is None or issued.jti != active.jti or not isinstance(url, str):
            return None  # a token being re-minted: its URL is not accepted yet
        return base64.b64decode(url).decode()

    async def namespace_of(self, project_id: str) -> str:
        """The one Namespace labelled with the project id; ``ProjectUnmapped`` when there isn't one."""
        try:
            found = await self._client.list(NAMESPACES, label_selector=f"{PROJECT_LABEL}={project_id}")
        except KubeError as e:
            raise unavailable(e) from e
        names = sorted(str((ns.get("metadata") or {}).get("name")) for ns in found)
        if not names:
            raise ProjectUnmapped(
                f"project {project_id} maps to no namespace (label a Namespace {PROJECT_LABEL}={project_id})"
            )
        if len(names) > 1:
            raise ProjectUnmapped(
                f"project {project_id} maps to {len(names)} namespaces ({', '.join(names)}); "
                f"label only one {PROJECT_LABEL}={project_id}"
            )
        return names[0]

    async def _settled(self, done: Callable[[], bool]) -> bool:
        """Whether ``done()`` came true within ``settle_timeout``."""
        try:
            async with asyncio.timeout(self._settle_timeout):
                while not done():  # noqa: ASYNC110 - the receiver set has no change events to wait on
                    await asyncio.sleep(self._poll_interval)
        except TimeoutError:
            return False
        return True


def receiver_object(
    project_id: str, namespace: str, receiver_id: str, name: str, spec: Mapping[str, Any]
) -> KubeObject:
    """The Receiver the API creates: the folder's manifest, in the project's namespace, labelled."""
    body = manifest(project_id, receiver_id, name, spec)
    body["metadata"]["namespace"] = namespace
    body["metadata"]["labels"] = {CREATED_BY_LABEL: CREATED_BY, PROJECT_LABEL: project_id}
    return body


def api_receiver(obj: KubeObject, project_id: str) -> ApiReceiver | None:
    """The API's view of a Receiver object; None unless the API created it for this project and it is
    not being deleted."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(CREATED_BY_LABEL) != CREATED_BY or labels.get(PROJECT_LABEL) != project_id:
        return None
    if metadata.get("deletionTimestamp"):
        return None
    return from_manifest(
        obj,
        project_id=project_id,
        namespace=str(metadata.get("namespace")),
        receiver_id=str(metadata.get("name")),
    )


def unavailable(error: KubeError) -> ApiStoreUnavailable:
    return ApiStoreUnavailable(f"the Kubernetes API failed: {error}")
