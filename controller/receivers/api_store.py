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
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from controller.model import API_VERSION, KIND
from controller.rancher.convert import dns_label
from controller.rancher.keys import NAME_ANNOTATION
from controller.receivers.loader import DNS1123_LABEL, LABEL_MAX
from controller.receivers.yamlsafe import ManifestError, decode, parse_documents, read_bounded

MAX_ID = 60  # a DNS label is 63 at most; the digest suffix must fit
DIGEST_CHARS = 6


@dataclass(frozen=True)
class ApiReceiver:
    """One file of the folder, as the API shows it."""

    project_id: str
    id: str
    name: str
    driver: str
    config: Mapping[str, Any]
    path: Path

    @property
    def key(self) -> str:
        return f"{self.project_id}/{self.id}"


class ApiReceiverFolder:
    """Writes, reads and removes the managed manifests. ``rescan``: the watcher's scan, awaited after
    each change so the receiver set shows it before the API answers."""

    def __init__(self, directory: Path, *, rescan: Callable[[], Awaitable[object]]) -> None:
        self.directory = directory
        self.rescan = rescan

    def write(self, project_id: str, receiver_id: str, name: str, spec: Mapping[str, Any]) -> Path:
        folder = self.directory / project_id
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

    def remove(self, receiver: ApiReceiver) -> None:
        receiver.path.unlink(missing_ok=True)

    def get(self, project_id: str, receiver_id: str) -> ApiReceiver | None:
        if not DNS1123_LABEL.match(receiver_id):
            return None  # also keeps a crafted id from naming a path outside the folder
        return _read(self.directory / project_id / f"{receiver_id}.yaml", project_id)

    def in_project(self, project_id: str) -> list[ApiReceiver]:
        folder = self.directory / project_id
        if not folder.is_dir():
            return []
        found = (_read(path, project_id) for path in sorted(folder.glob("*.yaml")))
        return [receiver for receiver in found if receiver is not None]


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


def _read(path: Path, project_id: str) -> ApiReceiver | None:
    """The file's receiver; None when it is gone or is not one this folder would have written (the
    watcher reports what is wrong with it)."""
    try:
        documents = parse_documents(decode(read_bounded(path)))
    except (ManifestError, OSError):
        return None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        return None
    metadata, spec = documents[0].get("metadata"), documents[0].get("spec")
    if not isinstance(metadata, dict) or not isinstance(spec, dict):
        return None
    driver = spec.get("driver")
    config = spec.get(f"{driver}Config")
    annotations = metadata.get("annotations") or {}
    if not isinstance(driver, str) or not isinstance(config, dict) or not isinstance(annotations, dict):
        return None
    receiver_id = path.stem
    name = annotations.get(NAME_ANNOTATION, receiver_id)
    return ApiReceiver(project_id, receiver_id, str(name), driver, config, path)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
