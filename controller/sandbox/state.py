"""The sandbox's live world: projects and services, their states and transitions, Cattle's refusals.

Transitions are computed lazily from an injected clock when a service is read, never by a
background task: a test advances a fake clock instead of sleeping, and nothing runs between
requests. A state set by a test (``restarting``, ``upgrading``...) stays until the test changes it.
Refusals raise ``ApiError``, which the HTTP edge (``controller.sandbox.app``) renders as Cattle's
error body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.sandbox.seed import DEFAULT_SEED, SandboxSeed, SeedProject, SeedService

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


class ApiError(Exception):
    """A refusal, answered with Cattle's error body."""

    def __init__(self, status: int, code: str, message: str, *, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field_name = status, code, message, field_name


@dataclass
class SandboxService:
    id: str
    project_id: str
    name: str
    stack_id: str
    kind: str
    image: str
    labels: dict[str, str]
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

    @property
    def transitioning(self) -> str:
        return "yes" if self.state in TRANSITIONING_STATES else "no"

    def settle(self, now: float) -> None:
        if self.settles_at is not None and now >= self.settles_at:
            self.settles_at = None
            self.come_to_rest(self.settles_to)

    def come_to_rest(self, state: str) -> None:
        self.state = state
        if state == "active":
            self.current_scale = self.scale
        elif state == "inactive":
            self.current_scale = 0


@dataclass
class SandboxProject:
    id: str
    name: str
    created: float
    state: str = "active"
    services: dict[str, SandboxService] = field(default_factory=dict)


class SandboxState:
    """The live world of one sandbox. Reads settle finished transitions first, using the clock."""

    def __init__(self, seed: SandboxSeed | None, *, transition_ms: int, clock: Callable[[], float]) -> None:
        seed = seed if seed is not None else DEFAULT_SEED
        self._clock = clock
        self._transition = transition_ms / 1000
        self._created = clock()
        self._next_index = 1
        self.projects: dict[str, SandboxProject] = {}
        for project in seed.projects:
            self.add_project(project)

    def add_project(self, seed: SeedProject) -> SandboxProject:
        project = SandboxProject(id=seed.id, name=seed.name, created=self._created)
        self.projects[seed.id] = project
        for s in seed.services:
            self.add_service(seed.id, s)
        return project

    def add_service(self, project_id: str, seed: SeedService) -> SandboxService:
        service = SandboxService(
            id=seed.id, project_id=project_id, name=seed.name, stack_id=seed.stack_id, kind=seed.kind,
            image=seed.image, labels=dict(seed.labels), scale=seed.scale, current_scale=0, state=seed.state,
            created=self._created, create_index=self._next_index,
        )  # fmt: skip
        service.come_to_rest(seed.state)
        self._next_index += 1
        self.projects[project_id].services[seed.id] = service
        return service

    def project(self, project_id: str) -> SandboxProject:
        try:
            return self.projects[project_id]
        except KeyError:
            raise ApiError(404, "NotFound", f"project {project_id} not found") from None

    def service(self, project_id: str, service_id: str) -> SandboxService:
        try:
            service = self.project(project_id).services[service_id]
        except KeyError:
            raise ApiError(404, "NotFound", f"service {service_id} not found") from None
        service.settle(self._clock())
        return service

    def services(self, project_id: str) -> list[SandboxService]:
        """The project's services in creation order; removed ones are hidden, as in Cattle's lists."""
        listed = [self.service(project_id, sid) for sid in self.project(project_id).services]
        return [s for s in listed if s.state not in ("removed", "purged")]

    def set_state(self, project_id: str, service_id: str, state: str) -> SandboxService:
        """Put a service in any state (e.g. "restarting") until changed again: for exercising refusals."""
        service = self.service(project_id, service_id)
        service.settles_at = None
        service.come_to_rest(state)
        return service

    def update(self, project_id: str, service_id: str, changes: Mapping[str, Any]) -> SandboxService:
        """A partial update (PUT): checks, then applies the updatable keys and starts the update."""
        service = self.service(project_id, service_id)
        check_update(changes)
        if "update" not in ACTIONS_BY_STATE.get(service.state, ()):
            raise ApiError(409, "Conflict", f"service {service_id} is {service.state}; try again later")
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
            service.settles_to = resting
            service.settles_at = self._clock() + self._transition
        # Otherwise (activating, upgrading...) the running process applies the new scale later.
        return service


def check_update(changes: Mapping[str, Any]) -> None:
    scale = changes.get("scale", 0)
    if not isinstance(scale, int) or isinstance(scale, bool):
        raise ApiError(422, "InvalidFormat", "scale must be an integer", field_name="scale")
    if scale < 0:
        raise ApiError(422, "MinLimitExceeded", "scale must be >= 0", field_name="scale")
    if "name" in changes and not (isinstance(changes["name"], str) and changes["name"]):
        raise ApiError(422, "InvalidFormat", "name must be a non-empty string", field_name="name")
    if "description" in changes and not isinstance(changes["description"], str | None):
        raise ApiError(422, "InvalidFormat", "description must be a string", field_name="description")
    if "metadata" in changes and not isinstance(changes["metadata"], dict | None):
        raise ApiError(422, "InvalidFormat", "metadata must be a map", field_name="metadata")
