"""The sandbox's live world: projects, services and hosts, their states and transitions, Cattle's refusals.

Transitions are computed lazily from an injected clock when a service is read, never by a
background task: a test advances a fake clock instead of sleeping, and nothing runs between
requests. A state set by a test (``restarting``, ``upgrading``...) stays until the test changes it.
A refused request raises ``Refusal``, which the HTTP edge (``controller.sandbox.app``) renders as
Cattle's error body.

A host is created from exactly one ``<driver>Config`` or from a ``hostTemplateId`` (a template a
seeded host was made from: the project knows those, each of one driver), as Cattle requires.
Hosts follow Cattle's machine lifecycle: a created host walks ``HOST_CREATE_STEPS`` (requested ->
... -> active) evenly over the transition time, and an evacuation with ``deleteHost`` takes it through
``removing`` to ``removed`` (hidden from lists, still readable by id). An active host with an
``agent_state`` shows that instead (``disconnected``, ``reconnecting``), as Cattle does.

Service actions (``?action=...``) are processes: each moves the service to its transitioning state at
once and settles after the transition time (``PROCESSES``). An in-service upgrade writes the new
launch configs (with a new ``version``) at once and keeps the previous ones until ``finishupgrade``
drops them or ``rollback`` restores them; it takes one transition per batch. An upgrade that is set
to fail (the app's ``fail_upgrade_of``) stays ``upgrading`` with transitioning ``error``, as a Cattle
process that failed does.

API keys and roles: a key's role decides what it may do, and Cattle shows that in the schemas it
serves the key (``ROLE_METHODS``; Cattle serves each role its own set of schemas): owners and members
may change services and hosts, a restricted user may change
services but not hosts (Rancher's "restricted" member manages stacks, not infrastructure), a read-only
user may change nothing. Requests a role may not make are refused 405, as Cattle refuses a method its
schema does not offer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.sandbox.seed import (
    DEFAULT_SEED,
    SandboxSeed,
    SeedGenericObject,
    SeedHost,
    SeedKey,
    SeedProject,
    SeedService,
)

UPDATABLE_EXTRA = ("scalePolicy", "metadata", "lbConfig", "retainIp", "selectorLink", "selectorContainer")
TRANSITIONING_STATES = frozenset(
    {
        "activating", "deactivating", "updating-active", "updating-inactive", "upgrading",
        "finishing-upgrade", "canceling-upgrade", "rolling-back", "restarting", "removing", "registering",
        "requested", "purging",
    }
)  # fmt: skip
ACTIONS_BY_STATE: Mapping[str, tuple[str, ...]] = {
    "active": ("update", "deactivate", "upgrade", "restart", "remove"),
    "inactive": ("activate", "update", "upgrade", "remove"),
    "activating": ("update", "deactivate", "upgrade", "remove"),
    "updating-active": ("update", "deactivate", "upgrade", "remove"),
    "updating-inactive": ("update", "activate", "upgrade", "remove"),
    "upgrading": ("update", "cancelupgrade", "rollback", "remove"),
    "upgraded": ("finishupgrade", "rollback", "remove"),
    "canceled-upgrade": ("continueupgrade", "rollback", "remove"),
    "finishing-upgrade": ("update", "cancelupgrade", "remove"),
    "restarting": ("activate", "deactivate", "remove"),
}
SERVICE_ACTIONS = frozenset(a for actions in ACTIONS_BY_STATE.values() for a in actions) - {"update"}
# action -> (its transitioning state, where it settles); upgrade and continueupgrade may fail instead.
PROCESSES: Mapping[str, tuple[str, str]] = {
    "activate": ("activating", "active"),
    "deactivate": ("deactivating", "inactive"),
    "restart": ("restarting", "active"),
    "remove": ("removing", "removed"),
    "upgrade": ("upgrading", "upgraded"),
    "continueupgrade": ("upgrading", "upgraded"),
    "cancelupgrade": ("canceling-upgrade", "canceled-upgrade"),
    "finishupgrade": ("finishing-upgrade", "active"),
    "rollback": ("rolling-back", "active"),
}
UPGRADE_FAILURE = "image pull failed"
INITIAL_VERSION = "0"

HOST_CREATE_STEPS = (
    "requested",
    "registering",
    "inactive",
    "provisioning",
    "provisioned",
    "activating",
    "active",
)
HOST_ACTIONS_BY_STATE: Mapping[str, tuple[str, ...]] = {
    "active": ("update", "deactivate", "evacuate"),
    "inactive": ("update", "activate", "remove", "evacuate"),
}
HIDDEN_STATES = frozenset({"removed", "purged"})

ADMIN_ROLE = "owner"  # what a request without credentials is, while no key is required
READ_ONLY: tuple[tuple[str, ...], tuple[str, ...]] = (("GET",), ("GET",))
WRITABLE: tuple[tuple[str, ...], tuple[str, ...]] = (("GET", "POST"), ("GET", "PUT", "DELETE"))
SCHEMA_IDS = (
    "apiVersion",
    "collection",
    "error",
    "externalHostEvent",
    "host",
    "project",
    "schema",
    "service",
)
# role -> schema id -> (collectionMethods, resourceMethods); a schema not named is read-only.
ROLE_METHODS: Mapping[str, Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]]] = {
    "owner": {"service": WRITABLE, "host": WRITABLE, "externalHostEvent": (("GET", "POST"), ("GET",))},
    "member": {"service": WRITABLE, "host": WRITABLE, "externalHostEvent": (("GET", "POST"), ("GET",))},
    "restricted": {"service": WRITABLE},
    "readonly": {},
}
# The collection (the path segment) each writable schema stands for, to refuse what a role may not do.
COLLECTIONS = {"services": "service", "hosts": "host", "externalhostevents": "externalHostEvent"}


def schema_methods(role: str, schema_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return ROLE_METHODS.get(role, {}).get(schema_id, READ_ONLY)


class Refusal(Exception):
    """A refusal, answered with Cattle's error body."""

    def __init__(self, status: int, code: str, message: str, *, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field_name = status, code, message, field_name


@dataclass(frozen=True)
class LaunchConfigs:
    """A service's ``launchConfig`` and ``secondaryLaunchConfigs`` (each with its ``name``), as Cattle's
    JSON: what an upgrade replaces and a rollback restores."""

    primary: Mapping[str, Any]
    secondary: tuple[Mapping[str, Any], ...] = ()


@dataclass
class SandboxService:
    id: str
    project_id: str
    name: str
    stack_id: str
    kind: str
    launch: LaunchConfigs
    scale: int
    current_scale: int
    state: str
    created: float
    create_index: int
    health_state: str = "healthy"
    description: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # other updatable fields, stored as sent
    settles_at: float | None = None  # end of the running update, if any
    settles_to: str = "active"
    settles_failing: bool = False  # the running process ends in error instead of in ``settles_to``
    error: str | None = None  # transitioningMessage of a process that failed (transitioning "error")
    upstream: str | None = None  # where the proxy forwards (seed ``upstream``); None: an echo
    previous: LaunchConfigs | None = None  # before the running upgrade, for rollback
    strategy: Mapping[str, Any] | None = None  # the running upgrade's inServiceStrategy, as sent
    upgrades: int = 0  # upgrades so far, for new launch config versions

    @property
    def image(self) -> str:
        return str(self.launch.primary.get("imageUuid", ""))

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.launch.primary.get("labels") or {})

    @property
    def transitioning(self) -> str:
        if self.error is not None:
            return "error"
        return "yes" if self.state in TRANSITIONING_STATES else "no"

    def settle(self, now: float) -> None:
        if self.settles_at is not None and now >= self.settles_at:
            self.settles_at = None
            if self.settles_failing:
                self.settles_failing, self.error = False, UPGRADE_FAILURE
            else:
                self.come_to_rest(self.settles_to)

    def come_to_rest(self, state: str) -> None:
        self.state = state
        self.error = None
        if state == "active":
            self.current_scale = self.scale
        elif state == "inactive":
            self.current_scale = 0


@dataclass
class SandboxHost:
    id: str
    project_id: str
    name: str
    hostname: str
    labels: dict[str, str]
    driver: str | None  # None: a custom host
    config: dict[str, Any] | None  # its <driver>Config; None for a custom host or one from a template
    state: str
    created: float
    agent_state: str | None = None
    host_template_id: str | None = None  # the host template it was made from, if any
    extra: dict[str, Any] = field(default_factory=dict)  # other fields sent on create, kept as sent
    schedule: list[tuple[float, str]] = field(default_factory=list)  # (when, state) still to come

    @property
    def shown_state(self) -> str:
        return self.agent_state if self.state == "active" and self.agent_state else self.state

    @property
    def transitioning(self) -> str:
        return "yes" if self.schedule else "no"

    def settle(self, now: float) -> None:
        while self.schedule and now >= self.schedule[0][0]:
            _, self.state = self.schedule.pop(0)


@dataclass(frozen=True)
class SandboxGenericObject:
    """A Cattle ``genericObject``: read-only here, as nothing the service does writes one."""

    id: str
    project_id: str
    name: str
    kind: str
    key: str
    resource_data: Mapping[str, Any]
    uuid: str
    created: float


@dataclass
class SandboxProject:
    id: str
    name: str
    created: float
    state: str = "active"
    services: dict[str, SandboxService] = field(default_factory=dict)
    hosts: dict[str, SandboxHost] = field(default_factory=dict)
    generic_objects: dict[str, SandboxGenericObject] = field(default_factory=dict)
    host_templates: dict[str, str] = field(default_factory=dict)  # host template id -> its driver


class SandboxState:
    """The live world of one sandbox. Reads settle finished transitions first, using the clock."""

    def __init__(self, seed: SandboxSeed | None, *, transition_ms: int, clock: Callable[[], float]) -> None:
        seed = seed if seed is not None else DEFAULT_SEED
        self._clock = clock
        self._transition = transition_ms / 1000
        self._created = clock()
        self._next_index = 1
        self._next_host = 1
        self._next_event = 1
        self._next_generic_object = 1
        self.host_create_calls = 0  # every POST of a host so far, for the app's injected failures
        self.projects: dict[str, SandboxProject] = {}
        self.keys: dict[str, SeedKey] = {key.access_key: key for key in seed.keys}
        for project in seed.projects:
            self.add_project(project)

    def add_project(self, seed: SeedProject) -> SandboxProject:
        project = SandboxProject(id=seed.id, name=seed.name, created=self._created)
        self.projects[seed.id] = project
        for s in seed.services:
            self.add_service(seed.id, s)
        for i, h in enumerate(seed.hosts):
            self.add_host(seed.id, h, created=self._created - (len(seed.hosts) - i))
        for g in seed.generic_objects:
            self.add_generic_object(seed.id, g)
        return project

    def add_generic_object(self, project_id: str, seed: SeedGenericObject) -> SandboxGenericObject:
        object_id = seed.id or f"1go{self._next_generic_object}"
        self._next_generic_object = max(self._next_generic_object, id_number(object_id) + 1)
        obj = SandboxGenericObject(
            id=object_id, project_id=project_id, name=seed.name, kind=seed.kind, key=seed.key,
            resource_data=dict(seed.resource_data),
            uuid=seed.uuid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{project_id}/{object_id}")),
            created=self._created,
        )  # fmt: skip
        self.projects[project_id].generic_objects[object_id] = obj
        return obj

    def generic_objects(self, project_id: str) -> list[SandboxGenericObject]:
        return list(self.project(project_id).generic_objects.values())

    def add_host(self, project_id: str, seed: SeedHost, *, created: float) -> SandboxHost:
        host = SandboxHost(
            id=seed.id, project_id=project_id, name=seed.name, hostname=seed.hostname or seed.name,
            labels=dict(seed.labels), driver=seed.driver,
            config=dict(seed.config) if seed.config is not None else None, state=seed.state,
            agent_state=seed.agent_state, created=created, host_template_id=seed.host_template_id,
        )  # fmt: skip
        self._next_host = max(self._next_host, id_number(seed.id) + 1)
        project = self.projects[project_id]
        project.hosts[seed.id] = host
        if seed.host_template_id is not None and seed.driver is not None:
            project.host_templates[seed.host_template_id] = seed.driver
        return host

    def add_service(self, project_id: str, seed: SeedService) -> SandboxService:
        launch = LaunchConfigs(
            primary={"imageUuid": seed.image, "labels": dict(seed.labels), "version": INITIAL_VERSION},
            secondary=tuple(
                {"name": s.name, "imageUuid": s.image, "labels": dict(s.labels), "version": INITIAL_VERSION}
                for s in seed.sidekicks
            ),
        )
        service = SandboxService(
            id=seed.id, project_id=project_id, name=seed.name, stack_id=seed.stack_id, kind=seed.kind,
            launch=launch, scale=seed.scale, current_scale=0, state=seed.state,
            created=self._created, create_index=self._next_index, upstream=seed.upstream,
        )  # fmt: skip
        service.come_to_rest(seed.state)
        self._next_index += 1
        self.projects[project_id].services[seed.id] = service
        return service

    def project(self, project_id: str) -> SandboxProject:
        try:
            return self.projects[project_id]
        except KeyError:
            raise Refusal(404, "NotFound", f"project {project_id} not found") from None

    def service(self, project_id: str, service_id: str) -> SandboxService:
        try:
            service = self.project(project_id).services[service_id]
        except KeyError:
            raise Refusal(404, "NotFound", f"service {service_id} not found") from None
        service.settle(self._clock())
        return service

    def services(self, project_id: str) -> list[SandboxService]:
        """The project's services in creation order; removed ones are hidden, as in Cattle's lists."""
        listed = [self.service(project_id, sid) for sid in self.project(project_id).services]
        return [s for s in listed if s.state not in ("removed", "purged")]

    def service_named(self, project_id: str, name: str) -> SandboxService:
        """The project's (listed) service with this name, as Cattle's proxy finds it."""
        for service in self.services(project_id):
            if service.name == name:
                return service
        raise Refusal(404, "NotFound", f"service {name} not found in project {project_id}")

    def host(self, project_id: str, host_id: str) -> SandboxHost:
        try:
            host = self.project(project_id).hosts[host_id]
        except KeyError:
            raise Refusal(404, "NotFound", f"host {host_id} not found") from None
        host.settle(self._clock())
        return host

    def hosts(self, project_id: str) -> list[SandboxHost]:
        """The project's hosts in creation order; removed ones are hidden, as in Cattle's lists."""
        listed = [self.host(project_id, hid) for hid in self.project(project_id).hosts]
        return [h for h in listed if h.state not in HIDDEN_STATES]

    def create_host(self, project_id: str, body: Mapping[str, Any]) -> SandboxHost:
        """POST of a host: exactly one ``<driver>Config`` or a known ``hostTemplateId``; it then
        provisions over the transition time."""
        project = self.project(project_id)
        driver, config, template = host_source(body, project.host_templates)
        hostname = body.get("hostname") or body.get("name")
        if not isinstance(hostname, str) or not hostname:
            raise Refusal(422, "MissingRequired", "hostname is required", field_name="hostname")
        if any(hostname in (h.hostname, h.name) for h in self.hosts(project_id)):
            raise Refusal(422, "NotUnique", f"a host named {hostname} exists", field_name="hostname")
        labels = body.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise Refusal(422, "InvalidFormat", "labels must be a map of strings", field_name="labels")
        now = self._clock()
        host = SandboxHost(
            id=f"1h{self._next_host}", project_id=project_id, name=str(body.get("name") or hostname),
            hostname=hostname, labels=dict(labels), driver=driver, config=config, state=HOST_CREATE_STEPS[0],
            created=now, extra={k: v for k, v in body.items() if k in HOST_EXTRA}, host_template_id=template,
        )  # fmt: skip
        steps = HOST_CREATE_STEPS[1:]
        host.schedule = [(now + self._transition * (i + 1) / len(steps), s) for i, s in enumerate(steps)]
        self._next_host += 1
        project.hosts[host.id] = host
        return host

    def evacuate_host(self, project_id: str, host_id: str, *, delete: bool) -> dict[str, Any]:
        """A ``host.evacuate`` external host event: deactivate the host, then (``delete``) remove it."""
        try:
            host = self.host(project_id, host_id)
        except Refusal:
            raise Refusal(422, "InvalidReference", f"host {host_id} not found", field_name="hostId") from None
        if host.state in HIDDEN_STATES:
            raise Refusal(422, "InvalidReference", f"host {host_id} is removed", field_name="hostId")
        now = self._clock()
        if host.state != "removing":
            if delete:
                host.state, host.schedule = "removing", [(now + self._transition, "removed")]
            else:
                host.state, host.schedule = "deactivating", [(now + self._transition, "inactive")]
        event = {"id": f"1ee{self._next_event}", "hostId": host_id, "deleteHost": delete, "created": now}
        self._next_event += 1
        return event

    def set_state(self, project_id: str, service_id: str, state: str) -> SandboxService:
        """Put a service in any state (e.g. "restarting") until changed again: for exercising refusals."""
        service = self.service(project_id, service_id)
        service.settles_at, service.settles_failing = None, False
        service.come_to_rest(state)
        return service

    def update(self, project_id: str, service_id: str, changes: Mapping[str, Any]) -> SandboxService:
        """A partial update (PUT): checks, then applies the updatable keys and starts the update."""
        service = self.service(project_id, service_id)
        check_update(changes)
        if "update" not in ACTIONS_BY_STATE.get(service.state, ()):
            raise Refusal(409, "Conflict", f"service {service_id} is {service.state}; try again later")
        if "scale" in changes:
            service.scale = changes["scale"]
        if "name" in changes:
            service.name = changes["name"]
        if "description" in changes:
            service.description = changes["description"]
        service.extra.update({k: changes[k] for k in UPDATABLE_EXTRA if k in changes})
        if service.state in ("active", "updating-active", "inactive", "updating-inactive"):
            resting = "inactive" if service.state.endswith("inactive") else "active"
            service.state = f"updating-{resting}"
            service.settles_to, service.settles_failing = resting, False
            service.settles_at = self._clock() + self._transition
        # Otherwise (activating, upgrading...) the running process applies the new scale later.
        return service

    def act(
        self, project_id: str, service_id: str, action: str, body: Mapping[str, Any], *, failing: bool = False
    ) -> SandboxService:
        """``POST ...?action=``: refused unless the current state offers it; then its process starts.
        ``failing`` makes an upgrade (or its continuation) end in error instead of ``upgraded``."""
        service = self.service(project_id, service_id)
        if action not in SERVICE_ACTIONS:
            raise Refusal(422, "InvalidAction", f"no action {action} on a service", field_name="action")
        if action not in ACTIONS_BY_STATE.get(service.state, ()):
            raise Refusal(
                422, "ActionNotAvailable", f"{action} is not available on a {service.state} service",
                field_name="action",
            )  # fmt: skip
        batches = 1
        if action == "upgrade":
            strategy = in_service_strategy(body)
            service.launch, service.previous = upgraded(service, strategy), service.launch
            service.strategy, service.upgrades = strategy, service.upgrades + 1
            batches = max(1, math.ceil(service.scale / strategy["batchSize"]))
        elif action == "rollback" and service.previous is not None:
            service.launch, service.previous, service.strategy = service.previous, None, None
        elif action == "finishupgrade":
            service.previous, service.strategy = None, None
        via, to = PROCESSES[action]
        service.come_to_rest(via)
        service.settles_to, service.settles_at = to, self._clock() + self._transition * batches
        service.settles_failing = failing and action in ("upgrade", "continueupgrade")
        return service


HOST_EXTRA = ("description", "engineInstallUrl", "engineOpt", "engineEnv", "engineLabel",
              "engineInsecureRegistry", "engineRegistryMirror", "engineStorageDriver")  # fmt: skip


def host_source(
    body: Mapping[str, Any], templates: Mapping[str, str]
) -> tuple[str, dict[str, Any] | None, str | None]:
    """What a host create builds from, as (driver, config, template id): its one non-null
    ``<driver>Config``, or else its ``hostTemplateId``, which must name one of ``templates``."""
    configs = [k for k, v in body.items() if k.endswith("Config") and v is not None]
    template = body.get("hostTemplateId")
    if len(configs) + (template is not None) != 1:
        raise Refusal(
            422,
            "DriverConfigExactlyOneRequired",
            "exactly one <driver>Config or a hostTemplateId is required",
            field_name="driver",
        )
    if template is not None:
        if template not in templates:
            raise Refusal(422, "InvalidReference", "no such host template", field_name="hostTemplateId")
        return templates[template], None, template
    config = body[configs[0]]
    if not isinstance(config, dict):
        raise Refusal(422, "InvalidFormat", f"{configs[0]} must be a map", field_name=configs[0])
    return configs[0].removesuffix("Config"), dict(config), None


def id_number(resource_id: str) -> int:
    digits = resource_id.lstrip("0123456789").lstrip("abcdefghijklmnopqrstuvwxyz")
    return int(digits) if digits.isdigit() else 0


def in_service_strategy(body: Mapping[str, Any]) -> dict[str, Any]:
    """The checked ``inServiceStrategy`` of an upgrade, with Cattle's defaults filled in."""
    strategy = body.get("inServiceStrategy")
    if strategy is None:
        raise Refusal(422, "MissingRequired", "inServiceStrategy is required", field_name="inServiceStrategy")
    if not isinstance(strategy, dict):
        raise Refusal(422, "InvalidFormat", "inServiceStrategy must be a map", field_name="inServiceStrategy")
    if strategy.get("launchConfig") is None and strategy.get("secondaryLaunchConfigs") is None:
        raise Refusal(
            422, "InvalidOption", "launchConfig or secondaryLaunchConfigs is required",
            field_name="launchConfig",
        )  # fmt: skip
    checked = {"batchSize": 1, "intervalMillis": 2000, "startFirst": False, **strategy}
    for key, low in (("batchSize", 1), ("intervalMillis", 100)):
        value = checked[key]
        if not isinstance(value, int) or isinstance(value, bool):
            raise Refusal(422, "InvalidFormat", f"{key} must be an integer", field_name=key)
        if value < low:
            raise Refusal(422, "MinLimitExceeded", f"{key} must be >= {low}", field_name=key)
    launch = checked.get("launchConfig")
    if launch is not None and not (isinstance(launch, dict) and isinstance(launch.get("imageUuid"), str)):
        raise Refusal(
            422, "MissingRequired", "launchConfig needs an imageUuid", field_name="launchConfig.imageUuid"
        )
    secondary = checked.get("secondaryLaunchConfigs")
    if secondary is not None and not (
        isinstance(secondary, list) and all(isinstance(c, dict) and c.get("name") for c in secondary)
    ):
        raise Refusal(
            422, "InvalidFormat", "secondaryLaunchConfigs must be a list of maps with a name",
            field_name="secondaryLaunchConfigs",
        )  # fmt: skip
    for config in [launch or {}, *(secondary or ())]:
        labels = config.get("labels")
        if labels is not None and not (
            isinstance(labels, dict) and all(isinstance(v, str) for v in labels.values())
        ):
            raise Refusal(422, "InvalidFormat", "labels must be a map of strings", field_name="labels")
    return checked


def upgraded(service: SandboxService, strategy: Mapping[str, Any]) -> LaunchConfigs:
    """The launch configs after an upgrade: the ones sent replace theirs (a sidekick by ``name``), each
    with a new version; an unknown sidekick name is refused."""
    version = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sandbox/{service.id}/{service.upgrades + 1}"))
    primary = service.launch.primary
    if strategy.get("launchConfig") is not None:
        primary = {**strategy["launchConfig"], "version": version}
    sent = {c["name"]: c for c in strategy.get("secondaryLaunchConfigs") or ()}
    unknown = sorted(set(sent) - {c["name"] for c in service.launch.secondary})
    if unknown:
        raise Refusal(
            422, "InvalidReference", f"no sidekick named {', '.join(unknown)}",
            field_name="secondaryLaunchConfigs",
        )  # fmt: skip
    secondary = tuple(
        {**sent[c["name"]], "version": version} if c["name"] in sent else c for c in service.launch.secondary
    )
    return LaunchConfigs(primary=primary, secondary=secondary)


def check_update(changes: Mapping[str, Any]) -> None:
    scale = changes.get("scale", 0)
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise Refusal(422, "InvalidFormat", "scale must be an integer", field_name="scale")
    if scale < 0:
        raise Refusal(422, "MinLimitExceeded", "scale must be >= 0", field_name="scale")
    if "name" in changes and not (isinstance(changes["name"], str) and changes["name"]):
        raise Refusal(422, "InvalidFormat", "name must be a non-empty string", field_name="name")
    if "description" in changes and not isinstance(changes["description"], str | None):
        raise Refusal(422, "InvalidFormat", "description must be a string", field_name="description")
    if "metadata" in changes and not isinstance(changes["metadata"], dict | None):
        raise Refusal(422, "InvalidFormat", "metadata must be a map", field_name="metadata")
