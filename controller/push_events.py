"""What a registry's push webhook says was pushed, and whether a tag is wanted: for ``serviceUpgrade``.

Four body formats, as registries send them:

- ``dockerhub``: ``push_data.tag`` and ``repository.repo_name`` (``acme/web``); the registry is Docker Hub.
- ``alicloud``: ``push_data.tag``, ``repository.repo_full_name`` and ``repository.region``. The body
  does not say which of the region's endpoints the services pull from, so the receiver does
  (``addressType``, as in Rancher's webhook service, which defaults it to ``registry``): the registry is
  ``<addressType>.<region>.aliyuncs.com``, with ``registry`` (public), ``registry-internal`` (the
  region's classic network) or ``registry-vpc`` (a VPC).
- ``azure`` (ACR): one event, ``action: push``, ``target.repository``, ``target.tag``,
  ``request.host``.
- ``registry`` (Docker Registry v2 notifications): an envelope ``{"events": [...]}``; the pushes
  that matter are manifest pushes with a tag (blob pushes carry no tag and are skipped).

Images are compared by (registry, repository) after normalising Docker Hub's spellings
(``nginx`` = ``library/nginx``; ``docker.io``, ``index.docker.io``, ``registry-1.docker.io`` are one
registry), so a push to ``acme/web`` matches a launch config running ``docker:acme/web:1.3`` and
nothing else (Rancher upgraded every selected service whatever its image; users called that a bug).

Tag patterns: an exact tag, a glob (``v1.*``, ``release-?``, ``[0-9]*``), or ``regex:<expression>``
(matched against the whole tag).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controller.errors import WebhookServiceError

PayloadFormat = Literal["dockerhub", "alicloud", "azure", "registry"]
FORMATS: tuple[PayloadFormat, ...] = ("dockerhub", "alicloud", "azure", "registry")
AddressType = Literal["registry", "registry-internal", "registry-vpc"]
ADDRESS_TYPES: tuple[AddressType, ...] = ("registry", "registry-internal", "registry-vpc")
DOCKER_HUB = "docker.io"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
_GLOB_CHARS = frozenset("*?[")


class MalformedPush(WebhookServiceError):
    """The body is not the registry's push format; ``field`` names what is missing or wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Push:
    registry: str  # normalised host, "docker.io" for Docker Hub
    repository: str  # normalised path, "library/nginx" for Docker Hub's official images
    tag: str

    @property
    def image(self) -> str:
        prefix = "" if self.registry == DOCKER_HUB else f"{self.registry}/"
        return f"{prefix}{self.repository}:{self.tag}"


def parse_pushes(
    payload_format: PayloadFormat, body: Any, *, address_type: AddressType = "registry"
) -> list[Push]:
    """The pushes in a webhook body; an empty list when it reports no tag push (e.g. a pull).
    ``address_type`` picks an ``alicloud`` push's endpoint in its region."""
    if not isinstance(body, dict):
        raise MalformedPush("", "the body must be a JSON object")
    if payload_format == "dockerhub":
        tag = _text(body, "push_data", "tag")
        return [_push(DOCKER_HUB, _text(body, "repository", "repo_name"), tag)]
    if payload_format == "alicloud":
        region = _text(body, "repository", "region")
        repository = _text(body, "repository", "repo_full_name")
        host = f"{address_type}.{region}.aliyuncs.com"
        return [_push(host, repository, _text(body, "push_data", "tag"))]
    if payload_format == "azure":
        if body.get("action") != "push":
            return []
        return [_event_push(body, "")]
    if payload_format == "registry":
        events = body.get("events")
        if not isinstance(events, list):
            raise MalformedPush("events", "expected a list of notification events")
        pushes = []
        for index, event in enumerate(events):
            if not isinstance(event, dict):
                raise MalformedPush(f"events[{index}]", "expected an object")
            target = event.get("target")
            if event.get("action") == "push" and isinstance(target, dict) and target.get("tag"):
                pushes.append(_event_push(event, f"events[{index}]."))
        return pushes
    raise MalformedPush("", f"unknown payload format {payload_format!r}")


def _event_push(event: Mapping[str, Any], where: str) -> Push:
    try:
        return _push(
            _text(event, "request", "host"),
            _text(event, "target", "repository"),
            _text(event, "target", "tag"),
        )
    except MalformedPush as e:
        raise MalformedPush(where + e.field, str(e).partition(": ")[2]) from None


def _text(body: Mapping[str, Any], *path: str) -> str:
    node: Any = body
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    if not isinstance(node, str) or not node:
        raise MalformedPush(".".join(path), "expected a non-empty string")
    return node


def _push(registry: str, repository: str, tag: str) -> Push:
    host, path = normalise(registry, repository)
    return Push(registry=host, repository=path, tag=tag)


def normalise(registry: str | None, repository: str) -> tuple[str, str]:
    host = (registry or DOCKER_HUB).lower()
    if host in _HUB_ALIASES:
        host = DOCKER_HUB
        if "/" not in repository:
            repository = f"library/{repository}"
    return host, repository.lower()


def image_repository(image_uuid: str) -> tuple[str, str, str | None]:
    """(registry, repository, tag) of a Cattle ``imageUuid`` like ``docker:registry:5000/acme/web:1.3``."""
    image = image_uuid.removeprefix("docker:")
    image, _, _digest = image.partition("@")
    name, tag = image, None
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = image.rpartition(":")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    host, path = normalise(registry, repository)
    return host, path, tag


@dataclass(frozen=True)
class TagPattern:
    text: str

    def __post_init__(self) -> None:
        if self.text.startswith("regex:"):
            try:
                re.compile(self.text.removeprefix("regex:"))
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from e
        elif not self.text:
            raise ValueError("a tag pattern can't be empty")

    @property
    def kind(self) -> Literal["exact", "glob", "regex"]:
        if self.text.startswith("regex:"):
            return "regex"
        return "glob" if _GLOB_CHARS & set(self.text) else "exact"

    def matches(self, tag: str) -> bool:
        if self.kind == "regex":
            return re.fullmatch(self.text.removeprefix("regex:"), tag) is not None
        if self.kind == "glob":
            return fnmatch.fnmatchcase(tag, self.text)
        return tag == self.text
