"""``webhook-service import-rancher``: Rancher 1.6's receivers, read from Cattle, as Receiver manifests.

Reading: every ``webhookReceiver`` generic object of the projects asked for (or of every project the
API key sees), through the one Cattle client. Converting is ``controller.rancher.convert``'s; a
receiver that can't be converted is reported, one line each, and the rest are still imported.

Writing, by default: one file per receiver in the receivers folder, ``rancher-<name>.yaml``. A file
already there with the same text is left alone (importing twice is a no-op); one that differs is
never overwritten without ``force``, since it may hold edits made after the first import. Each file is
written whole to a temporary name and renamed, so a running service's watcher never reads half of
one. For Kubernetes the manifests are printed instead, one YAML stream, for ``kubectl apply -f -``.

Names are made unique among the imported receivers: the second "Scale up" of a project becomes
``scale-up-<its object id>``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiohttp
import yaml

from controller.cattle.client import CattleClient
from controller.drivers.contract import Driver
from controller.rancher.convert import (
    MAX_NAME,
    WEBHOOK_RECEIVER_KIND,
    Converted,
    GenericObject,
    Unconvertible,
    convert,
    dns_label,
)
from controller.receivers.schema import ReceiverSchema
from controller.settings import Settings

FILE_PREFIX = "rancher-"
FALLBACK_NAME = "receiver"  # for a Rancher name with no letter or digit


@dataclass(frozen=True)
class Found:
    """One stored receiver and the project it was found in."""

    project_id: str
    obj: GenericObject

    @property
    def shown(self) -> str:
        """How a line names it: project, Rancher name and object id (never its key)."""
        return f"{self.project_id}/{self.obj.get('name', '')!r} ({self.obj.get('id', '?')})"


@dataclass
class Outcome:
    """What an import did: ``done`` lines for people, ``problems`` one line each (exit 1 when any)."""

    converted: list[Converted] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def read_receivers(client: CattleClient, projects: Sequence[str]) -> list[Found]:
    """The stored receivers of ``projects`` (empty: every project the key sees), in Cattle's order."""
    project_ids = list(projects) or [str(p["id"]) for p in await client.list_projects()]
    found: list[Found] = []
    for project_id in project_ids:
        for item in await client.list_generic_objects(project_id, kind=WEBHOOK_RECEIVER_KIND):
            found.append(Found(project_id, cast(GenericObject, item)))
    return found


def convert_all(
    found: Sequence[Found], *, namespace: str, drivers: Mapping[str, Driver], schema: ReceiverSchema
) -> Outcome:
    outcome = Outcome()
    taken: set[str] = set()
    for item in found:
        name = dns_label(item.obj.get("name", "")) or FALLBACK_NAME
        if name in taken:
            suffix = dns_label(item.obj.get("id", "")) or str(len(taken))
            name = f"{name[: MAX_NAME - len(suffix) - 1]}-{suffix}"
        try:
            converted = convert(
                item.obj, item.project_id, name=name, namespace=namespace, drivers=drivers, schema=schema
            )
        except Unconvertible as e:
            outcome.problems.append(f"{item.shown}: not imported: {e}")
            continue
        taken.add(name)
        outcome.converted.append(converted)
    return outcome


def render(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False, allow_unicode=True, width=110)


def render_stream(converted: Sequence[Converted]) -> str:
    """All manifests as one YAML stream, for ``kubectl apply -f -``."""
    return "".join(f"---\n{render(c.manifest)}" for c in converted)


def write_files(outcome: Outcome, directory: Path, *, force: bool) -> None:
    """One file per converted receiver; a differing file is replaced only with ``force``."""
    directory.mkdir(parents=True, exist_ok=True)
    for converted in outcome.converted:
        path = directory / f"{FILE_PREFIX}{converted.name}.yaml"
        text = render(converted.manifest)
        try:
            existing = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            existing = None
        if existing == text:
            outcome.done.append(f"{path}: unchanged")
            continue
        if existing is not None and not force:
            outcome.problems.append(f"{path}: exists and differs; not overwritten (--force replaces it)")
            continue
        _write_whole(path, text)
        outcome.done.append(f"{path}: {'replaced' if existing is not None else 'written'}")


def _write_whole(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


async def import_receivers(
    settings: Settings,
    *,
    projects: Sequence[str],
    namespace: str,
    drivers: Mapping[str, Driver],
    schema: ReceiverSchema,
) -> Outcome:
    """Read and convert; the caller writes (``write_files``) or prints (``render_stream``)."""
    async with aiohttp.ClientSession() as session:
        client = CattleClient(
            session,
            base_url=settings.cattle_url,
            access_key=settings.cattle_access_key,
            secret_key=settings.cattle_secret_key,
            timeout=settings.cattle_timeout,
        )
        found = await read_receivers(client, projects)
    return convert_all(found, namespace=namespace, drivers=drivers, schema=schema)
