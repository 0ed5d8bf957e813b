"""``serviceUpgrade``: when a registry reports a push, upgrade the Cattle services running that image.

The hit's body says what was pushed (``controller.push_events``: Docker Hub, Alibaba Cloud, Azure
ACR or a Docker Registry v2 envelope), so this driver is a ``BodyReader`` (``controller.drivers.contract``):
``decide`` keeps the pushes whose tag matches ``tag`` (exact, glob or ``regex:``) and asks for the
last of them; a push of another tag is answered 200 ``ignored`` with the reason. The intent records
the image and the upgrade strategy in force when the hit was accepted (as scale intents record their
bounds), so editing or removing the receiver later does not change an upgrade already accepted.

The upgrade is not a scale, so the driver is also an ``IntentApplier``: the reconciler hands it the
pending intents and marks them done only when ``apply_intents`` returns. Only the newest intent is
carried out; older ones are superseded by it (upgrading to v1.2 and then at once to v1.3 is wasted
work) and recorded as such. For each service of the project whose launch config, or one of whose
sidekicks, carries every ``serviceSelector`` label (``labels_match``: case-insensitive, an empty value
asks only for the key), the launch configs running the pushed repository (same registry and repository
after normalising; Rancher upgraded every selected service whatever its image, which users called a
bug) get the new image through Cattle's in-service upgrade, which then is waited for (``upgraded``),
finished and waited for again (``active``).

Every accepted push redeploys, even when the launch config already names the pushed image: re-pushing
``latest`` is how many users release, and Rancher upgraded in that case too. So the new launch configs
carry ``io.rancher.container.pull_image: always`` (otherwise the hosts would start the image they
already have) and the upgrade happens whether or not the image string changes.

Durability: a crash or a timeout leaves the intent pending, and the next pass starts from what Cattle
shows, so an upgrade is never started twice. Since the image no longer tells whether this intent's
upgrade was started (a re-push changes no image), each new launch config carries a marker label,
``webhook-service.dev/upgrade-hit: <hit id>``: Cattle stores it with the upgrade itself, in the same
call, so no crash can fall between starting an upgrade and recording that it was started. Per service,
``_drive`` looks at the service each time round and does the one thing its state calls for: a service
``upgrading`` is waited for, one ``upgraded`` is finished (ours, or an older one Cattle wants finished
before accepting another), one at rest whose launch configs of the repository carry this hit's marker is
done, and only one at rest without it gets an upgrade. Waiting has no poll limit, only an overall
``deadline`` (``UPGRADE_DEADLINE``) with capped exponential backoff; past it ``ConfirmTimeout`` makes the
reconciler retry later (and this pass's work is picked up where it stands).

Units: ``intervalMillis`` is milliseconds, as Cattle takes it. Rancher's own field of that name was
sent to Cattle multiplied by 1000 (its default 2 meant two seconds); ``rancher_interval_to_millis``
converts such a value for whatever imports a Rancher receiver, so there is one unit in our YAML.

Failure: Cattle marks a failing upgrade ``transitioning: error`` and leaves it ``upgrading``. The
driver then rolls it back when Cattle offers ``rollback`` and raises ``TargetRefused``: the reconciler
fails the intents with the message (status, ``reconciles{result="failed"}``, an error log line).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

from controller.cattle.client import CattleClient
from controller.cattle.shapes import CattleLaunchConfig, CattleService
from controller.drivers._selector import (
    labels_match,
    parse_selector,
    secret_of,
    selector_schema,
    selector_target,
    selector_target_from_key,
    selector_text,
)
from controller.drivers.base import ConfirmTimeout, DriverContext, TargetRefused, project_id_schema
from controller.drivers.contract import ConfigSchema, Decision, MalformedBody, config_of
from controller.manifest import ReceiverSpec
from controller.model import Problem, Target
from controller.push_events import (
    ADDRESS_TYPES,
    FORMATS,
    AddressType,
    MalformedPush,
    TagPattern,
    image_repository,
    parse_pushes,
)
from controller.store.base import FoldStep, PendingIntent

logger = logging.getLogger(__name__)

UPGRADE_DEADLINE = 1800.0  # seconds one pass waits for its upgrades before the reconciler retries
DEFAULT_BATCH_SIZE = 1
DEFAULT_INTERVAL_MILLIS = 2000
STARTABLE = frozenset({"active", "inactive"})  # at rest, where Cattle accepts ?action=upgrade
IN_UPGRADE = frozenset({"upgrading", "upgraded", "finishing-upgrade"})
TRANSIENT = frozenset({"activating", "updating-active", "updating-inactive", "rolling-back", "restarting"})
POLL_CAP = 5.0  # seconds; upgrades take minutes, so a look every few seconds is enough
PULL_IMAGE_LABEL = "io.rancher.container.pull_image"  # "always": hosts pull even a tag they have
HIT_LABEL = "webhook-service.dev/upgrade-hit"  # the hit whose upgrade wrote this launch config
RANCHER_INTERVAL_FACTOR = 1000  # Rancher's intervalMillis times this is what it sent to Cattle
CONFIG_FIELD = "serviceUpgradeConfig"
CONFIG = f"spec.{CONFIG_FIELD}"


class ServiceUpgradeConfig(TypedDict):
    projectId: str
    serviceSelector: dict[str, str]  # labels every selected launch config (or sidekick) carries
    tag: str  # exact, glob, or "regex:<expression>"
    payloadFormat: Literal["dockerhub", "alicloud", "azure", "registry"]
    addressType: NotRequired[AddressType]  # default "registry"; the alicloud endpoint services pull from
    batchSize: NotRequired[int]  # default 1
    intervalMillis: NotRequired[int]  # default 2000
    startFirst: NotRequired[bool]  # default false


CONFIG_SCHEMA: ConfigSchema = {
    "type": "object",
    "description": (
        "Settings of the serviceUpgrade driver (required when driver is serviceUpgrade): each hit is a "
        "registry's push webhook; when the pushed tag matches tag, the services of the project selected "
        "by serviceSelector that run the pushed repository get the pushed image through Cattle's "
        "in-service upgrade (with io.rancher.container.pull_image=always, so a re-pushed tag is pulled "
        "and redeployed), which is then finished. A push of another tag is answered 200 and ignored. "
        "A failing upgrade is rolled back."
    ),
    "required": ["projectId", "serviceSelector", "tag", "payloadFormat"],
    "properties": {
        "projectId": project_id_schema("the services"),
        "serviceSelector": selector_schema(
            "Labels that select the services: a service is selected when its launch config, or one of "
            "its sidekicks', carries every one of these label=value pairs. Of a selected service only the "
            "launch configs running the pushed repository change."
        ),
        "tag": {
            "type": "string",
            "minLength": 1,
            "description": (
                "The tags that trigger an upgrade: an exact tag (v1.4.2), a glob (v1.*, release-?) or "
                "regex:<expression>, matched against the whole tag."
            ),
        },
        "payloadFormat": {
            "type": "string",
            "enum": list(FORMATS),
            "description": (
                "The webhook body's format: dockerhub (Docker Hub), alicloud (Alibaba Cloud Container "
                "Registry), azure (Azure Container Registry) or registry (Docker Registry v2 "
                "notifications, an envelope of events)."
            ),
        },
        "addressType": {
            "type": "string",
            "enum": list(ADDRESS_TYPES),
            "default": "registry",
            "description": (
                "For payloadFormat alicloud: the endpoint of the push's region the services pull from, "
                "registry (registry.<region>.aliyuncs.com), registry-internal "
                "(registry-internal.<region>.aliyuncs.com) or registry-vpc "
                "(registry-vpc.<region>.aliyuncs.com)."
            ),
        },
        "batchSize": {
            "type": "integer",
            "minimum": 1,
            "default": DEFAULT_BATCH_SIZE,
            "description": "How many containers of a service Cattle replaces at a time.",
        },
        "intervalMillis": {
            "type": "integer",
            "minimum": 100,
            "default": DEFAULT_INTERVAL_MILLIS,
            "description": (
                "Milliseconds Cattle waits between two batches (Rancher's serviceUpgrade counted "
                "this field in seconds)."
            ),
        },
        "startFirst": {
            "type": "boolean",
            "default": False,
            "description": (
                "When true, Cattle starts the new containers of a batch before stopping the old ones; "
                "when false, it stops the old ones first."
            ),
        },
    },
}


def upgrade_config(spec: ReceiverSpec) -> ServiceUpgradeConfig:
    config: ServiceUpgradeConfig = config_of(spec, CONFIG_FIELD)
    return config


class ServiceUpgradeDriver:
    name = "serviceUpgrade"
    config_field = CONFIG_FIELD
    config_schema = CONFIG_SCHEMA
    summary = (
        "serviceUpgrade reads a container registry's push webhook and upgrades the Cattle services "
        "running the pushed image (in-service upgrade); its settings go in serviceUpgradeConfig."
    )

    def __init__(
        self,
        *,
        deadline: float = UPGRADE_DEADLINE,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        poll_cap: float = POLL_CAP,
    ) -> None:
        self.deadline = deadline
        self.poll_cap = poll_cap  # the longest wait between two looks at an upgrading service
        self.clock = clock
        self.sleep = sleep

    # -- the receiver

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        config = upgrade_config(spec)
        problems = []
        batch = config.get("batchSize", DEFAULT_BATCH_SIZE)
        if batch < 1:
            problems.append(Problem(f"{CONFIG}.batchSize", f"batchSize ({batch}) must be >= 1"))
        interval = config.get("intervalMillis", DEFAULT_INTERVAL_MILLIS)
        if interval < 100:
            problems.append(
                Problem(f"{CONFIG}.intervalMillis", f"intervalMillis ({interval}) must be >= 100")
            )
        try:
            TagPattern(config["tag"])
        except ValueError as e:
            problems.append(Problem(f"{CONFIG}.tag", f"tag {config['tag']!r}: {e}"))
        if config["payloadFormat"] not in FORMATS:
            problems.append(
                Problem(
                    f"{CONFIG}.payloadFormat",
                    f"payloadFormat {config['payloadFormat']!r} is not one of {', '.join(FORMATS)}",
                )
            )
        if config.get("addressType", "registry") not in ADDRESS_TYPES:
            problems.append(
                Problem(
                    f"{CONFIG}.addressType",
                    f"addressType {config.get('addressType')!r} is not one of {', '.join(ADDRESS_TYPES)}",
                )
            )
        if not config["serviceSelector"]:
            problems.append(Problem(f"{CONFIG}.serviceSelector", "must name at least one label"))
        return problems

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = upgrade_config(spec)
        selector = selector_text(config["serviceSelector"])
        return selector_target(
            self.name, "serviceSelector", config["projectId"], selector, secret_of(spec, namespace)
        )

    def target_from_key(self, key: str) -> Target:
        return selector_target_from_key(self.name, "serviceSelector", key)

    def action(self, spec: ReceiverSpec) -> str:
        return "act on what each hit's body says (e.g. upgrade to the pushed image)"

    def describe_intent(self, intent: Mapping[str, Any]) -> str:
        return f"roll out {intent.get('image', '?')}"

    # -- the hit (BodyReader)

    def decide(self, spec: ReceiverSpec, body: bytes, content_type: str) -> Decision:
        config = upgrade_config(spec)
        payload_format = config["payloadFormat"]
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as e:
            raise MalformedBody("body", f"a {payload_format} push must be JSON") from e
        try:
            pushes = parse_pushes(payload_format, data, address_type=config.get("addressType", "registry"))
        except MalformedPush as e:
            raise MalformedBody(e.field or "body", str(e).partition(": ")[2]) from e
        pattern = TagPattern(config["tag"])
        wanted = [p for p in pushes if pattern.matches(p.tag)]
        if not pushes:
            return Decision("ignored", f"the {payload_format} body reports no tag push")
        if not wanted:
            tags = ", ".join(sorted({p.tag for p in pushes}))
            verb = "does" if len(pushes) == 1 else "do"
            return Decision("ignored", f"tag {tags} {verb} not match {pattern.text}")
        push = wanted[-1]
        intent = {
            "registry": push.registry,
            "repository": push.repository,
            "tag": push.tag,
            "image": push.image,
            "strategy": strategy_of(config),
        }
        return Decision("act", None, intent)

    # -- the upgrade (IntentApplier)

    async def apply_intents(
        self, target: Target, pending: Sequence[PendingIntent], ctx: DriverContext
    ) -> list[FoldStep]:
        """Upgrade to the newest intent's image; return a step per intent (``after``: services upgraded)."""
        newest = pending[-1]
        steps = [FoldStep(p.seq, p.hit_id, before=0, after=0, clamped=False) for p in pending[:-1]]
        for p in pending[:-1]:
            logger.info(
                "[%s] hit %s (%s) is superseded by hit %s (%s)",
                target.id, p.hit_id, p.intent.get("image"), newest.hit_id, newest.intent.get("image"),
            )  # fmt: skip
        upgraded = await self._upgrade(target, newest.hit_id, newest.intent, ctx)
        steps.append(FoldStep(newest.seq, newest.hit_id, before=0, after=upgraded, clamped=False))
        return steps

    async def _upgrade(
        self, target: Target, hit_id: str, intent: Mapping[str, Any], ctx: DriverContext
    ) -> int:
        cattle = await ctx.cattle_for(target)
        project_id = target.claims["projectId"]
        selector = parse_selector(target.claims["serviceSelector"])
        repository = (intent["registry"], intent["repository"])
        image = f"docker:{intent['image']}"
        services = [s for s in await cattle.list_services(project_id) if selected(s, selector)]
        deadline = self.clock() + self.deadline
        count = 0
        for service in services:
            if not running(service, repository):
                logger.info(
                    "[%s] service %s (%s) is selected but does not run %s/%s: left alone",
                    target.id, service.get("id"), service.get("name"), *repository,
                )  # fmt: skip
                continue
            await self._drive(
                cattle, project_id, service, repository, image, hit_id, intent["strategy"], deadline, ctx
            )
            logger.info(
                "[%s] service %s (%s) runs %s", target.id, service.get("id"), service.get("name"), image
            )
            count += 1
        if count == 0:
            logger.warning(
                "[%s] no service selected by %s runs %s/%s: nothing upgraded",
                target.id, target.claims["serviceSelector"], *repository,
            )  # fmt: skip
        return count

    async def _drive(
        self,
        cattle: CattleClient,
        project_id: str,
        service: CattleService,
        repository: tuple[str, str],
        image: str,
        hit_id: str,
        strategy: Mapping[str, Any],
        deadline: float,
        ctx: DriverContext,
    ) -> None:
        """Take one service to rest on hit ``hit_id``'s upgrade to ``image``, doing at each look what its
        state calls for."""
        service_id = service["id"]
        wait = ctx.poll_interval
        while True:
            state, busy = service.get("state", ""), service.get("transitioning") == "yes"
            if service.get("transitioning") == "error":
                await self._fail(cattle, project_id, service, image)
            if state in STARTABLE and not busy:
                if upgraded_by(service, repository, hit_id):
                    return
                body = upgrade_strategy(service, repository, image, hit_id, strategy)
                logger.info("service %s (%s): upgrading to %s", service_id, service.get("name"), image)
                service = await cattle.upgrade_service(project_id, service_id, body)
            elif state == "upgraded" and not busy:
                # Ours (a pass interrupted before finishing) or an older one: either way Cattle
                # accepts a new upgrade only once this one is finished.
                logger.info("service %s (%s): finishing the upgrade", service_id, service.get("name"))
                service = await cattle.finish_upgrade(project_id, service_id)
            elif state not in IN_UPGRADE | STARTABLE | TRANSIENT:
                raise TargetRefused(
                    f"service {service_id} ({service.get('name')}) is {state}: "
                    f"it can't be upgraded to {image}"
                )
            if self.clock() > deadline:
                raise ConfirmTimeout(
                    f"service {service_id} did not finish upgrading to {image} within {self.deadline:g}s "
                    f"(state {service.get('state')}); the next pass continues it"
                )
            await self.sleep(wait)
            wait = min(wait * 2, self.poll_cap)
            service = await cattle.get_service(project_id, service_id)

    async def _fail(self, cattle: CattleClient, project_id: str, service: CattleService, image: str) -> None:
        service_id = service["id"]
        message = service.get("transitioningMessage") or "Cattle reports an error"
        what = f"service {service_id} ({service.get('name')}) failed to upgrade to {image}: {message}"
        if "rollback" in (service.get("actions") or {}):
            await cattle.rollback_service(project_id, service_id)
            logger.error("%s; rolling back", what)
            raise TargetRefused(f"{what}; rollback started (Cattle restores the previous launch config)")
        logger.error("%s; Cattle offers no rollback", what)
        raise TargetRefused(f"{what}; Cattle offers no rollback")


def strategy_of(config: ServiceUpgradeConfig) -> dict[str, Any]:
    return {
        "batchSize": config.get("batchSize", DEFAULT_BATCH_SIZE),
        "intervalMillis": config.get("intervalMillis", DEFAULT_INTERVAL_MILLIS),
        "startFirst": config.get("startFirst", False),
    }


def launch_configs(service: CattleService) -> list[CattleLaunchConfig]:
    primary = service.get("launchConfig")
    return ([primary] if primary else []) + list(service.get("secondaryLaunchConfigs") or [])


def selected(service: CattleService, selector: Mapping[str, str]) -> bool:
    """Whether the launch config, or a sidekick's, carries every label of ``selector``."""
    return any(labels_match(config.get("labels"), selector) for config in launch_configs(service))


def runs(config: CattleLaunchConfig, repository: tuple[str, str]) -> bool:
    image = config.get("imageUuid")
    return bool(image) and image_repository(image or "")[:2] == repository


def running(service: CattleService, repository: tuple[str, str]) -> bool:
    return any(runs(config, repository) for config in launch_configs(service))


def upgraded_by(service: CattleService, repository: tuple[str, str], hit_id: str) -> bool:
    """Whether every launch config of the pushed repository was written by hit ``hit_id``'s upgrade."""
    return all(
        (c.get("labels") or {}).get(HIT_LABEL) == hit_id
        for c in launch_configs(service)
        if runs(c, repository)
    )


def upgrade_strategy(
    service: CattleService, repository: tuple[str, str], image: str, hit_id: str, strategy: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``inServiceStrategy``: the full new launch config(s) of the pushed repository only."""
    body: dict[str, Any] = dict(strategy)
    primary = service.get("launchConfig")
    if primary and runs(primary, repository):
        body["launchConfig"] = new_config(primary, image, hit_id)
    sidekicks = [
        new_config(c, image, hit_id)
        for c in service.get("secondaryLaunchConfigs") or []
        if runs(c, repository)
    ]
    if sidekicks:
        body["secondaryLaunchConfigs"] = sidekicks
    return body


def new_config(config: CattleLaunchConfig, image: str, hit_id: str) -> dict[str, Any]:
    new: dict[str, Any] = copy.deepcopy(dict(config))
    new.pop("version", None)  # Cattle gives the new config its own version
    new["imageUuid"] = image
    new["labels"] = {**(new.get("labels") or {}), PULL_IMAGE_LABEL: "always", HIT_LABEL: hit_id}
    return new


def rancher_interval_to_millis(value: int) -> int:
    """Our ``intervalMillis`` for a Rancher serviceUpgrade's ``intervalMillis``, which Rancher multiplied
    by 1000 before sending it to Cattle (so its default 2 is 2000 here)."""
    return value * RANCHER_INTERVAL_FACTOR


DRIVER = ServiceUpgradeDriver()
