"""The sandbox's starting world, read from YAML: projects, their services, hosts and generic objects.

Kept apart from the live state so a seed is a plain frozen value: tests build one in code, ``make run``
loads ``examples/sandbox-seed.yaml``, and every sandbox started from it begins identical. Field names
follow Cattle's (``stackId``, ``type``) so a seed reads like the resources it becomes. Problems are
reported all at once, with the path of the offending field.

    projects:
      - id: 1a5
        name: Default
        services:
          - {id: 1s7, name: web, stackId: 1st1, scale: 1, image: "docker:nginx:1.13",
             labels: {tier: front}, sidekicks: [{name: logs, image: "docker:fluentd:1.2"}]}
        hosts:
          - {id: 1h1, name: worker-1, labels: {role: worker}, driver: digitalocean,
             digitaloceanConfig: {region: nyc3, size: 1gb, image: ubuntu-16-04-x64}}
          - {id: 1h4, name: edge-1, labels: {role: edge}}  # no driver: a custom host

A project's ``genericObjects`` are Cattle's ``genericObject`` resources in Rancher's own shape (``kind``,
``name``, ``key``, ``resourceData``; ``id`` and ``uuid`` are made up when absent): what Rancher 1.6's
webhook service stored for each receiver, ``kind: webhookReceiver`` with ``resourceData: {url, driver,
config}``, for ``import-rancher`` to read.

    genericObjects:
      - {name: scale up, kind: webhookReceiver, key: <40 characters>,
         resourceData: {driver: scaleService, url: "...", config: {serviceId: 1s7, ...}}}

A service's ``image`` and ``labels`` become its ``launchConfig``; each of its ``sidekicks`` (``name``,
``image``, ``labels``) becomes one of its ``secondaryLaunchConfigs``, as in-service upgrades see them.

A service may name an ``upstream`` (``http://host:port``): Cattle's proxy (``/r/projects/...``) then
forwards to it for real; without one the sandbox's proxy answers as an echo upstream.

API keys (``keys``) stand for Rancher users: each has an ``accessKey``, a ``secretKey`` and the
``role`` its user holds in every project (``owner``, ``member``, ``restricted`` or ``readonly``), which
decides the schemas Cattle serves it (``controller.sandbox.state.ROLE_METHODS``):

    keys:
      - {accessKey: owner-access, secretKey: owner-secret, role: owner}
      - {accessKey: viewer-access, secretKey: viewer-secret, role: readonly}

A host with a ``driver`` carries that driver's ``<driver>Config`` (a machine-driver host, which the
scaleHost driver can clone), or instead a ``hostTemplateId`` when it was made from a host template
(which holds the config; the sandbox then knows that template, of that driver, for creates); a host
without a driver is custom. ``hostname`` defaults to ``name``; ``state``
(default active) and ``agentState`` (e.g. disconnected) are Cattle's fields. Seeded hosts are created
in file order, one second apart, before the sandbox starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.errors import WebhookServiceError

DEFAULT_IMAGE = "docker:nginx"
ROLES = ("owner", "member", "restricted", "readonly")


class SeedError(WebhookServiceError):
    """The seed file is unreadable or wrong; the message lists every problem."""


@dataclass(frozen=True)
class SeedSidekick:
    name: str
    image: str = DEFAULT_IMAGE
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SeedService:
    id: str
    name: str
    stack_id: str
    scale: int = 1
    kind: str = "service"  # Cattle's ``type``: service, loadBalancerService, dnsService, ...
    image: str = DEFAULT_IMAGE
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "active"
    upstream: str | None = None  # where Cattle's proxy forwards to (http://host:port); None: an echo
    sidekicks: tuple[SeedSidekick, ...] = ()  # its secondaryLaunchConfigs


@dataclass(frozen=True)
class SeedHost:
    id: str
    name: str
    hostname: str = ""  # "" means the same as name
    labels: Mapping[str, str] = field(default_factory=dict)
    state: str = "active"
    agent_state: str | None = None
    driver: str | None = None  # None: a custom host
    config: Mapping[str, Any] | None = None  # the <driver>Config of a machine-driver host
    host_template_id: str | None = None  # instead of config: the host template it was made from


@dataclass(frozen=True)
class SeedGenericObject:
    name: str
    kind: str
    key: str
    resource_data: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""  # "" means one is made up (1go<n>)
    uuid: str = ""  # "" means one is made up


@dataclass(frozen=True)
class SeedProject:
    id: str
    name: str = "Default"
    services: tuple[SeedService, ...] = ()
    hosts: tuple[SeedHost, ...] = ()
    generic_objects: tuple[SeedGenericObject, ...] = ()


@dataclass(frozen=True)
class SeedKey:
    """A Rancher API key: HTTP Basic user and password, and its user's role in the projects."""

    access_key: str
    secret_key: str
    role: str = "owner"


@dataclass(frozen=True)
class SandboxSeed:
    projects: tuple[SeedProject, ...] = ()
    keys: tuple[SeedKey, ...] = ()


def load_seed(path: Path) -> SandboxSeed:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise SeedError(f"{path}: {e}") from e
    return parse_seed(data, source=str(path))


def parse_seed(data: Any, *, source: str = "<seed>") -> SandboxSeed:
    problems: list[str] = []
    if not isinstance(data, dict) or not isinstance(data.get("projects"), list):
        raise SeedError(f"{source}: expected a mapping with a 'projects' list")
    projects = [_project(p, f"projects[{i}]", problems) for i, p in enumerate(data["projects"])]
    _check_unique([p.id for p in projects], "project", problems)
    keys = _keys(data.get("keys", []), problems)
    for p in projects:
        _check_unique([s.id for s in p.services], f"service in project {p.id}", problems)
        _check_unique([h.id for h in p.hosts], f"host in project {p.id}", problems)
        _check_unique(
            [g.id for g in p.generic_objects if g.id], f"generic object in project {p.id}", problems
        )
    if problems:
        raise SeedError(f"{source}: " + "; ".join(problems))
    return SandboxSeed(projects=tuple(projects), keys=keys)


def _keys(data: Any, problems: list[str]) -> tuple[SeedKey, ...]:
    if not isinstance(data, list):
        problems.append("keys: expected a list")
        return ()
    keys: list[SeedKey] = []
    for i, item in enumerate(data):
        where = f"keys[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        role = _text(item, "role", where, problems, default="owner")
        if role and role not in ROLES:
            problems.append(f"{where}.role: expected one of {', '.join(ROLES)}, got {role!r}")
        keys.append(
            SeedKey(
                _text(item, "accessKey", where, problems), _text(item, "secretKey", where, problems), role
            )
        )
    _check_unique([k.access_key for k in keys], "API key (accessKey)", problems)
    return tuple(keys)


def _project(data: Any, where: str, problems: list[str]) -> SeedProject:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping")
        return SeedProject(id="")
    services = data.get("services", [])
    if not isinstance(services, list):
        problems.append(f"{where}.services: expected a list")
        services = []
    hosts = data.get("hosts", [])
    if not isinstance(hosts, list):
        problems.append(f"{where}.hosts: expected a list")
        hosts = []
    objects = data.get("genericObjects", [])
    if not isinstance(objects, list):
        problems.append(f"{where}.genericObjects: expected a list")
        objects = []
    return SeedProject(
        id=_text(data, "id", where, problems),
        name=_text(data, "name", where, problems, default="Default"),
        services=tuple(_service(s, f"{where}.services[{i}]", problems) for i, s in enumerate(services)),
        hosts=tuple(_host(h, f"{where}.hosts[{i}]", problems) for i, h in enumerate(hosts)),
        generic_objects=tuple(
            _generic_object(g, f"{where}.genericObjects[{i}]", problems) for i, g in enumerate(objects)
        ),
    )


def _generic_object(data: Any, where: str, problems: list[str]) -> SeedGenericObject:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping")
        return SeedGenericObject(name="", kind="", key="")
    resource_data = data.get("resourceData", {})
    if not isinstance(resource_data, dict):
        problems.append(f"{where}.resourceData: expected a mapping")
        resource_data = {}
    return SeedGenericObject(
        name=_text(data, "name", where, problems),
        kind=_text(data, "kind", where, problems),
        key=_text(data, "key", where, problems),
        resource_data=resource_data,
        id=_text(data, "id", where, problems) if "id" in data else "",
        uuid=_text(data, "uuid", where, problems) if "uuid" in data else "",
    )


def _host(data: Any, where: str, problems: list[str]) -> SeedHost:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping")
        return SeedHost(id="", name="")
    labels = data.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(f"{where}.labels: expected a mapping")
        labels = {}
    driver = data.get("driver")
    configs = sorted(k for k in data if k.endswith("Config"))
    config: Mapping[str, Any] | None = None
    template = data.get("hostTemplateId")
    if template is not None and not (isinstance(template, str) and template):
        problems.append(f"{where}.hostTemplateId: expected a non-empty string, got {template!r}")
        template = None
    if driver is None:
        if configs or template is not None:
            field = configs[0] if configs else "hostTemplateId"
            problems.append(f"{where}.{field}: a custom host (no driver) has no driver config or template")
    elif not isinstance(driver, str) or not driver:
        problems.append(f"{where}.driver: expected a non-empty string, got {driver!r}")
        driver = None
    elif template is not None:
        if configs:
            problems.append(f"{where}.{configs[0]}: a host made from a template has no driver config")
    elif configs != [f"{driver}Config"] or not isinstance(data[f"{driver}Config"], dict):
        problems.append(
            f"{where}.{driver}Config: a {driver} host needs exactly this one driver config mapping "
            "(or a hostTemplateId)"
        )
    else:
        config = dict(data[f"{driver}Config"])
    agent_state = data.get("agentState")
    if agent_state is not None and not isinstance(agent_state, str):
        problems.append(f"{where}.agentState: expected a string, got {agent_state!r}")
        agent_state = None
    name = _text(data, "name", where, problems)
    return SeedHost(
        id=_text(data, "id", where, problems),
        name=name,
        hostname=_text(data, "hostname", where, problems, default=name or "-"),
        labels={str(k): str(v) for k, v in labels.items()},
        state=_text(data, "state", where, problems, default="active"),
        agent_state=agent_state,
        driver=driver,
        config=config,
        host_template_id=template,
    )


def _service(data: Any, where: str, problems: list[str]) -> SeedService:
    if not isinstance(data, dict):
        problems.append(f"{where}: expected a mapping")
        return SeedService(id="", name="", stack_id="")
    scale = data.get("scale", 1)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 0:
        problems.append(f"{where}.scale: expected an integer >= 0, got {scale!r}")
        scale = 0
    labels = data.get("labels", {})
    if not isinstance(labels, dict):
        problems.append(f"{where}.labels: expected a mapping")
        labels = {}
    return SeedService(
        id=_text(data, "id", where, problems),
        name=_text(data, "name", where, problems),
        stack_id=_text(data, "stackId", where, problems, default="1st1"),
        scale=scale,
        kind=_text(data, "type", where, problems, default="service"),
        image=_text(data, "image", where, problems, default=DEFAULT_IMAGE),
        labels={str(k): str(v) for k, v in labels.items()},
        state=_text(data, "state", where, problems, default="active"),
        upstream=_upstream(data, where, problems),
        sidekicks=_sidekicks(data, where, problems),
    )


def _sidekicks(data: dict[str, Any], where: str, problems: list[str]) -> tuple[SeedSidekick, ...]:
    sidekicks = data.get("sidekicks", [])
    if not isinstance(sidekicks, list):
        problems.append(f"{where}.sidekicks: expected a list")
        return ()
    parsed: list[SeedSidekick] = []
    for i, item in enumerate(sidekicks):
        at = f"{where}.sidekicks[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: expected a mapping")
            continue
        labels = item.get("labels", {})
        if not isinstance(labels, dict):
            problems.append(f"{at}.labels: expected a mapping")
            labels = {}
        parsed.append(
            SeedSidekick(
                name=_text(item, "name", at, problems),
                image=_text(item, "image", at, problems, default=DEFAULT_IMAGE),
                labels={str(k): str(v) for k, v in labels.items()},
            )
        )
    _check_unique([s.name for s in parsed], f"sidekick name in {where}", problems)
    return tuple(parsed)


def _upstream(data: dict[str, Any], where: str, problems: list[str]) -> str | None:
    upstream = data.get("upstream")
    if upstream is None:
        return None
    if not isinstance(upstream, str) or not upstream.startswith(("http://", "https://")):
        problems.append(f"{where}.upstream: expected an http:// or https:// URL, got {upstream!r}")
        return None
    return upstream.rstrip("/")


def _text(
    data: dict[str, Any], key: str, where: str, problems: list[str], *, default: str | None = None
) -> str:
    value = data.get(key, default)
    if isinstance(value, str) and value:
        return value
    problems.append(f"{where}.{key}: expected a non-empty string, got {value!r}")
    return ""


def _check_unique(ids: list[str], what: str, problems: list[str]) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"duplicate {what} id {i!r}")
        seen.add(i)


# The world without a seed file: the same as examples/sandbox-seed.yaml, but with no API keys, so
# that any credentials are let in (access control off), as before keys could be seeded.
DEFAULT_SEED = SandboxSeed(
    projects=(
        SeedProject(
            id="1a5",
            name="Default",
            services=(
                SeedService(
                    id="1s7",
                    name="web",
                    stack_id="1st1",
                    scale=1,
                    image="docker:nginx:1.13",
                    labels={"app": "web"},
                ),
                SeedService(id="1s8", name="worker", stack_id="1st1", scale=2),
                SeedService(id="1s9", name="builder", stack_id="1st1", scale=1),
            ),
            hosts=(
                *(
                    SeedHost(
                        id=f"1h{n}",
                        name=f"worker-{n}",
                        hostname=f"worker-{n}",
                        labels={"role": "worker"},
                        driver="digitalocean",
                        config={"image": "ubuntu-16-04-x64", "region": "nyc3", "size": "2gb"},
                    )
                    for n in (1, 2, 3)
                ),
                SeedHost(id="1h4", name="edge-1", hostname="edge-1", labels={"role": "edge"}),
            ),
        ),
    ),
)
