"""The receivers created through the receivers API, kept as Receiver manifests in a folder the service
manages (``settings.api_receivers_path``), beside the folder people write.

Why files and not rows in the store: a receiver made by the Rancher UI or the Rancher Pipeline is then
the same kind of thing as a hand-written one — ``validate`` checks it, ``status`` lists it, the watcher
loads it, last-good rule and duplicate checks included — and it can be copied into Git as it is.

Layout: one file per receiver, ``<folder>/<projectId>/<id>.yaml``. The receiver's namespace is its
Cattle project id (a project id like ``1a5`` is a DNS label), so names are unique per project as in
Rancher, and its ``metadata.name`` is the API's ``id``. Rancher's receiver names are free text ("Scale
up web"), manifest names are DNS names, so the id is the name made DNS-safe (plus a short digest of the
name when that changed it), and the name itself is kept in the annotation ``import-rancher`` uses
(``controller.rancher.keys.NAME_ANNOTATION``).

A file is written to a hidden temporary name in the same folder (the watcher skips hidden entries),
flushed, then renamed over its final name, so the watcher never reads half of it.

The API sees a store only through ``ApiReceiverStore``, which operator mode implements with Receiver
objects (``controller.operator.api_receivers``). The contract both keep: ``write`` and ``remove``
answer once the receiver set shows the change (the new receiver active, the removed one gone), so
the trigger URL the API answers with works, and a deleted one is refused, by the time the caller
reads the answer; a store lists and finds only the receivers the API created, never hand-written
ones. It is async because the Kubernetes store's every step is a request; the folder's file reads
are small and stay synchronous inside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from controller.errors import WebhookServiceError
from controller.model import API_VERSION, KIND, ActiveReceiver
from controller.rancher.convert import dns_label
from controller.rancher.keys import NAME_ANNOTATION
from controller.receiver_set import ReceiverSet
from controller.receivers.loader import DNS1123_LABEL, LABEL_MAX
from controller.receivers.yamlsafe import ManifestError, decode, parse_documents, read_bounded
from controller.tokens import trigger_url

MAX_ID = 60  # a DNS label is 63 at most; the digest suffix must fit
DIGEST_CHARS = 6


class ApiStoreError(WebhookServiceError):
    """What a store of the API's receivers could not do; the API answers each kind with its status."""


class DuplicateReceiver(ApiStoreError):
    """A receiver of that id is declared already (by the API, or by hand in the same place)."""


class ProjectUnmapped(ApiStoreError):
    """The store has no place for this Cattle project's receivers; the message says how to give one."""


class ReceiverRejected(ApiStoreError):
    """The receiver was stored but did not load; it was removed again."""


class NotSettled(ApiStoreError):
    """The receiver set did not show the change in time."""


class ApiStoreUnavailable(ApiStoreError):
    """The store could not be reached; the same request may pass later."""

    retryable = True


@dataclass(frozen=True)
class ApiReceiver:
    """One receiver the API created, as the API shows it. ``namespace`` is the receiver's own (the
    project id in the folder, the project's labelled namespace on Kubernetes)."""

    project_id: str
    namespace: str
    id: str
    name: str
    driver: str
    config: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Its key in the receiver set."""
        return f"{self.namespace}/{self.id}"


class ApiReceiverStore(Protocol):
    """Where the receivers API keeps the receivers it creates (see the module docstring)."""

    async def write(
        self, project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]
    ) -> ApiReceiver:
        """Store a new receiver; answer once the receiver set holds it active. ``DuplicateReceiver``
        when the id is taken; ``ReceiverRejected`` or ``NotSettled`` when it did not become active
        (nothing is left stored then)."""
        ...

    async def remove(self, receiver: ApiReceiver) -> None:
        """Remove it; answer once the receiver set no longer holds it."""
        ...

    async def get(self, project_id: str, receiver_id: str) -> ApiReceiver | None: ...

    async def in_project(self, project_id: str) -> list[ApiReceiver]: ...

    async def url(self, receiver: ApiReceiver, active: ActiveReceiver) -> str | None:
        """The trigger URL of an active receiver; None when it can't be told (yet)."""
        ...


class ApiReceiverFolder:
    """Writes, reads and removes the managed manifests. ``rescan``: the watcher's scan, awaited after
    each change so ``receiver_set`` (which the watcher fills) shows it before the API answers;
    ``base_url``: where trigger URLs point."""

    def __init__(
        self,
        directory: Path,
        *,
        rescan: Callable[[], Awaitable[object]],
        receiver_set: ReceiverSet,
        base_url: str,
    ) -> None:
        self.directory = directory
        self.rescan = rescan
        self.receiver_set = receiver_set
        self.base_url = base_url

    async def write(
        self, project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]
    ) -> ApiReceiver:
        await self.rescan()  # a receiver just written by hand counts too
        if self.receiver_set.get(f"{project_id}/{receiver_id}") is not None:
            raise DuplicateReceiver(f"receiver {project_id}/{receiver_id} is declared already")
        path = await asyncio.to_thread(write_manifest, self.directory, project_id, receiver_id, name, spec)
        await self.rescan()
        stored = _read(path, project_id)
        if stored is None or self.receiver_set.get(stored.key) is None:
            path.unlink(missing_ok=True)
            await self.rescan()
            raise ReceiverRejected("it did not load; see the service's log")
        return stored

    async def remove(self, receiver: ApiReceiver) -> None:
        self._path(receiver.project_id, receiver.id).unlink(missing_ok=True)
        await self.rescan()

    async def get(self, project_id: str, receiver_id: str) -> ApiReceiver | None:
        if not DNS1123_LABEL.match(receiver_id):
            return None  # also keeps a crafted id from naming a path outside the folder
        return _read(self._path(project_id, receiver_id), project_id)

    async def in_project(self, project_id: str) -> list[ApiReceiver]:
        folder = self.directory / project_id
        if not folder.is_dir():
            return []
        found = (_read(path, project_id) for path in sorted(folder.glob("*.yaml")))
        return [receiver for receiver in found if receiver is not None]

    async def url(self, receiver: ApiReceiver, active: ActiveReceiver) -> str:
        return trigger_url(self.base_url, active.token, receiver.project_id)

    def _path(self, project_id: str, receiver_id: str) -> Path:
        return self.directory / project_id / f"{receiver_id}.yaml"


def write_manifest(
    directory: Path, project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]
) -> Path:
    """Write the receiver's manifest at its place in the folder, whole or not at all; its path."""
    folder = directory / project_id
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{receiver_id}.yaml"
    temporary = folder / f".{receiver_id}.yaml.tmp"
    text = yaml.safe_dump(manifest(project_id, receiver_id, name, spec), sort_keys=False)
    with open(temporary, "w", encoding="utf-8", opener=_private) as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path


def manifest(project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": receiver_id, "namespace": project_id, "annotations": {NAME_ANNOTATION: name}},
        "spec": dict(spec),
    }


def receiver_id_for(name: str) -> str:
    """The DNS-label id of a Rancher receiver name: itself when it is one, else a slug and a digest."""
    if DNS1123_LABEL.match(name) and len(name) <= MAX_ID:
        return name
    slug = dns_label(name)[: MAX_ID - DIGEST_CHARS - 1].strip("-")
    digest = hashlib.sha256(name.encode()).hexdigest()[:DIGEST_CHARS]
    return f"{slug or 'receiver'}-{digest}"


def is_project_id(project_id: str) -> bool:
    return len(project_id) <= LABEL_MAX and DNS1123_LABEL.match(project_id) is not None


def from_manifest(document: Any, *, project_id: str, namespace: str, receiver_id: str) -> ApiReceiver | None:
    """The API's view of a Receiver manifest (or object); None when it is not one the API would have
    written."""
    if not isinstance(document, dict):
        return None
    metadata, spec = document.get("metadata"), document.get("spec")
    if not isinstance(metadata, dict) or not isinstance(spec, dict):
        return None
    driver = spec.get("driver")
    config = spec.get(f"{driver}Config")
    annotations = metadata.get("annotations") or {}
    if not isinstance(driver, str) or not isinstance(config, dict) or not isinstance(annotations, dict):
        return None
    name = annotations.get(NAME_ANNOTATION, receiver_id)
    return ApiReceiver(project_id, namespace, receiver_id, str(name), driver, config)


def _read(path: Path, project_id: str) -> ApiReceiver | None:
    """The file's receiver; None when it is gone or is not one this folder would have written (the
    watcher reports what is wrong with it)."""
    try:
        documents = parse_documents(decode(read_bounded(path)))
    except (ManifestError, OSError):
        return None
    if len(documents) != 1:
        return None
    return from_manifest(documents[0], project_id=project_id, namespace=project_id, receiver_id=path.stem)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
