"""``scaleService``: scale a Cattle service (Rancher 1.x) up or down.

Like Rancher's own driver it refuses services that have no meaningful scale: kinds other than
``service`` / ``loadBalancerService``, global services (label ``io.rancher.scheduler.global``), and
the placeholder image ``docker:rancher/none``. Those are permanent refusals (``TargetRefused``), so
the reconciler fails the intents instead of retrying forever.
"""

from __future__ import annotations

from controller.cattle.shapes import CattleService
from controller.drivers._step import (
    STEP_FIELDS,
    StepConfig,
    check_bounds,
    step_action,
    step_intent,
    step_properties,
)
from controller.drivers.base import (
    CATTLE_SECRET_CLAIM,
    DriverContext,
    TargetRefused,
    project_id_schema,
    wait_until,
)
from controller.drivers.contract import ConfigSchema, config_of
from controller.manifest import ReceiverSpec
from controller.model import Problem, ScaleIntent, Target

SCALABLE_KINDS = frozenset({"service", "loadBalancerService"})
GLOBAL_LABEL = "io.rancher.scheduler.global"
NONE_IMAGE = "docker:rancher/none"


class ScaleServiceConfig(StepConfig):
    projectId: str
    serviceId: str


CONFIG_SCHEMA: ConfigSchema = {
    "type": "object",
    "description": "Settings of the scaleService driver. Required when driver is scaleService.",
    "required": ["projectId", "serviceId", *STEP_FIELDS],
    "properties": {
        "projectId": project_id_schema("the service"),
        "serviceId": {
            "type": "string",
            "pattern": "^1s[0-9]+$",
            "description": "The Cattle service id to scale, like 1s7.",
        },
        **step_properties(
            action="Whether one hit scales the service up or down.",
            amount="How many containers one accepted hit adds or removes.",
            below="The scale is never taken below this many containers.",
            above="The scale is never taken above this many containers.",
        ),
    },
}


class ScaleServiceDriver:
    name = "scaleService"
    config_field = "scaleServiceConfig"
    config_schema = CONFIG_SCHEMA
    summary = "scaleService scales a Cattle (Rancher 1.x) service; its settings go in scaleServiceConfig."

    def config(self, spec: ReceiverSpec) -> ScaleServiceConfig:
        config: ScaleServiceConfig = config_of(spec, self.config_field)
        return config

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        return check_bounds(self.config(spec), self.config_field)

    def action(self, spec: ReceiverSpec) -> str:
        return step_action(self.config(spec))

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = self.config(spec)
        ref = spec.get("cattleSecretRef")
        return self._target(
            config["projectId"], config["serviceId"], f"{namespace}/{ref['name']}" if ref else None
        )

    def target_from_key(self, key: str) -> Target:
        service, _, secret = key.partition("@")
        project_id, _, service_id = service.partition("/")
        return self._target(project_id, service_id, secret or None)

    def _target(self, project_id: str, service_id: str, secret: str | None) -> Target:
        # Another Cattle (credentials from a Secret) is another target, even for the same ids.
        claims = {"projectId": project_id, "serviceId": service_id}
        if secret is not None:
            claims[CATTLE_SECRET_CLAIM] = secret
        return Target(
            driver=self.name,
            key=f"{project_id}/{service_id}" + (f"@{secret}" if secret else ""),
            project_id=project_id,
            claims=claims,
        )

    def intent(self, spec: ReceiverSpec) -> ScaleIntent:
        return step_intent(self.config(spec))

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        cattle = await ctx.cattle_for(target)
        service = await cattle.get_service(target.claims["projectId"], target.claims["serviceId"])
        refuse_unscalable(service)
        return int(service.get("scale", 0))

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        """PUT the absolute scale, then wait until Cattle shows it settled. Returns the scale seen."""
        project_id, service_id = target.claims["projectId"], target.claims["serviceId"]
        cattle = await ctx.cattle_for(target)
        service = await cattle.set_service_scale(project_id, service_id, desired)
        service = await wait_until(
            lambda: cattle.get_service(project_id, service_id),
            lambda s: settled(s, desired),
            ctx,
            lambda s: (
                f"service {service_id} did not settle at scale {desired} within {ctx.confirm_timeout:g}s "
                f"(state {s.get('state')}, scale {s.get('scale')})"
            ),
            first=service,
        )
        return int(service.get("scale", 0))


def settled(service: CattleService, desired: int) -> bool:
    # A PUT while upgrading is accepted and kept: Cattle applies it when the upgrade ends, which may be
    # hours away. The recorded scale is what we set, so that counts as converged.
    if service.get("state") == "upgrading":
        return service.get("scale") == desired
    return service.get("scale") == desired and service.get("transitioning") != "yes"


def refuse_unscalable(service: CattleService) -> None:
    kind = service.get("type", "service")
    if kind not in SCALABLE_KINDS:
        raise TargetRefused(f"service {service.get('id')} is a {kind}, which has no scale")
    launch = service.get("launchConfig") or {}
    if (launch.get("labels") or {}).get(GLOBAL_LABEL) == "true":
        raise TargetRefused(f"service {service.get('id')} is global ({GLOBAL_LABEL}=true) and has no scale")
    if launch.get("imageUuid") == NONE_IMAGE:
        raise TargetRefused(f"service {service.get('id')} runs {NONE_IMAGE} and can't be scaled")


DRIVER = ScaleServiceDriver()
