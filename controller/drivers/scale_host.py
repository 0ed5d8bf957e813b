"""``scaleHost``: grow or shrink a group of Cattle hosts (Rancher 1.x machine-driver hosts).

The group is the project's hosts whose labels match *every* pair of ``hostSelector`` (Rancher's own
driver matched one pair by accident) and that are in service: ``active``, or unhealthy at rest
(``inactive``, ``disconnected``, ``reconnecting``). Its size is the scale, so the reconciler's fold,
durable intents and retries work unchanged: each intent's step is ``amount``, clamped to min..max,
which is also why one hit never adds or removes more than ``amount`` hosts. Hosts being created or
removed are not members; unhealthy ones are, so that removing them is what shrinks the group.

``apply(desired)`` is idempotent, because a retry (after a crash, a timeout, or the third of five
creates failing) must never double the hosts:

- **up** clones the group's *oldest* machine-driver member, as Rancher's scaleHost did, so hosts that
  join the group later (perhaps made by hand, with other settings) don't change what a scale-up makes.
  A member created from a host template (``hostTemplateId``) is cloned through the template, since
  the template holds the driver's credentials and the host shows none; any other through its
  ``<driver>Config``. Either way the clone gets the member's labels, minus the agent-reported
  ``io.rancher.host.*`` ones. The new hosts are named as Rancher names them: the template's name
  (else hostname) without its domain, its trailing number counted on with the same zero-padding
  (``node01.example.com`` gives ``node02``; ``node09`` gives ``node10``, ``node99`` ``node100``; an
  unnumbered ``web`` counts as 1 and gives ``web2``), after the highest such number among *all* the
  project's names and hostnames, so no hostname ever repeats. Before creating, it counts the hosts
  still on their way (transitioning, not removing) that carry the group's labels and such a name: a
  retry sees the hosts its failed attempt created and creates only the missing ones. A group with no
  machine-driver member can't grow (``TargetRefused``).
- **down** removes members the way Cattle does (a ``host.evacuate`` event with ``deleteHost``):
  unhealthy ones first, then by ``deleteOption`` on the creation time (``mostRecent``, the default,
  or ``leastRecent``), as many as the group exceeds ``desired``.

``deleteOption`` is a property of the down receiver, not of the group: an up and a down receiver of
one selector share one target (one fold, one order), so it can't be in the target key, and the
reconciler hands ``apply`` only the desired size. ``apply`` therefore asks the context for the
target's current receivers (``ctx.receivers_of``, backed by the registry in both modes) and uses
their down receiver's option; with none declared (e.g. removed while intents were pending) it is
``mostRecent``, and of two down receivers that disagree the first by name wins.

Creation and removal are asynchronous in Cattle, so ``apply`` then polls (like ``scale_service``)
until the group shows ``desired`` members, within ``ctx.confirm_timeout``; otherwise ``ConfirmTimeout``
and the reconciler retries. A Cattle error on a create (422, 500...) propagates as classified.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, cast

from controller.cattle.client import CattleClient
from controller.cattle.shapes import CattleHost
from controller.drivers._selector import (
    labels_match,
    parse_selector,
    secret_of,
    selector_schema,
    selector_target,
    selector_target_from_key,
    selector_text,
)
from controller.drivers._step import (
    STEP_FIELDS,
    StepConfig,
    check_bounds,
    step_action,
    step_intent,
    step_properties,
)
from controller.drivers.base import DriverContext, TargetRefused, project_id_schema, wait_until
from controller.drivers.contract import ConfigSchema, config_of
from controller.manifest import ReceiverSpec
from controller.model import Problem, Receiver, ScaleIntent, Target

HEALTHY = "active"
UNHEALTHY = frozenset({"inactive", "disconnected", "reconnecting"})  # removed first on the way down
LEAVING = frozenset({"deactivating", "removing", "removed", "purging", "purged", "error", "erroring"})
AGENT_LABEL_PREFIX = "io.rancher.host."  # labels the agent reports about the machine: not cloned
CLONED_FIELDS = (
    "description", "engineInstallUrl", "engineOpt", "engineEnv", "engineLabel", "engineInsecureRegistry",
    "engineRegistryMirror", "engineStorageDriver",
)  # fmt: skip
NUMBERED = re.compile(r"^(.*?)(\d+)$")
UNNUMBERED = 1  # the number of a template whose name has none: its first clone is <name>2
CONFIG_FIELD = "scaleHostConfig"


class ScaleHostConfig(StepConfig):
    projectId: str
    hostSelector: dict[str, str]
    deleteOption: NotRequired[Literal["mostRecent", "leastRecent"]]


CONFIG_SCHEMA: ConfigSchema = {
    "type": "object",
    "description": (
        "Settings of the scaleHost driver (required when driver is scaleHost): grows or shrinks a group "
        "of Cattle hosts. The group is the active hosts of the project whose labels match every pair of "
        "hostSelector; its size is the scale."
    ),
    "required": ["projectId", "hostSelector", *STEP_FIELDS],
    "properties": {
        "projectId": project_id_schema("the hosts"),
        "hostSelector": selector_schema(
            "Host labels that pick the group; a host belongs to it when it carries every one of these "
            "label=value pairs."
        ),
        **step_properties(
            action="up clones a machine-driver host of the group into new hosts; down removes hosts "
            "(evacuate, then delete).",
            amount="How many hosts one accepted hit adds or removes (never more).",
            below="The group is never taken below this many hosts.",
            above="The group is never taken above this many hosts.",
        ),
        "deleteOption": {
            "type": "string",
            "enum": ["mostRecent", "leastRecent"],
            "description": (
                "For action down only: which hosts go first after the unhealthy ones (inactive, "
                "disconnected, reconnecting): the most or the least recently created. Default mostRecent."
            ),
        },
    },
}


def host_config(spec: ReceiverSpec) -> ScaleHostConfig:
    config: ScaleHostConfig = config_of(spec, CONFIG_FIELD)
    return config


class ScaleHostDriver:
    name = "scaleHost"
    config_field = CONFIG_FIELD
    config_schema = CONFIG_SCHEMA
    summary = "scaleHost grows or shrinks a group of Cattle hosts; its settings go in scaleHostConfig."

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        config = host_config(spec)
        problems = check_bounds(config, self.config_field)
        if "deleteOption" in config and config["action"] == "up":
            problems.append(Problem("spec.scaleHostConfig.deleteOption", "only for action down"))
        return problems

    def action(self, spec: ReceiverSpec) -> str:
        return step_action(host_config(spec))

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = host_config(spec)
        selector = selector_text(config["hostSelector"])
        return selector_target(
            self.name, "hostSelector", config["projectId"], selector, secret_of(spec, namespace)
        )

    def target_from_key(self, key: str) -> Target:
        return selector_target_from_key(self.name, "hostSelector", key)

    def intent(self, spec: ReceiverSpec) -> ScaleIntent:
        return step_intent(host_config(spec))

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        cattle = await ctx.cattle_for(target)
        hosts = await cattle.list_hosts(target.claims["projectId"])
        return len(members(hosts, parse_selector(target.claims["hostSelector"])))

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        """Make the group ``desired`` hosts large (see the module docstring); returns the size seen."""
        project_id = target.claims["projectId"]
        selector = parse_selector(target.claims["hostSelector"])
        cattle = await ctx.cattle_for(target)
        hosts = await cattle.list_hosts(project_id)
        group = members(hosts, selector)
        if len(group) < desired:
            await self._grow(cattle, target, hosts, group, desired - len(group))
        elif len(group) > desired:
            option = delete_option(ctx.receivers_of(target.id))
            for host in removal_order(group, option)[: len(group) - desired]:
                await cattle.evacuate_host(project_id, host["id"])
        return await self._wait(cattle, target, selector, desired, ctx)

    async def _grow(
        self,
        cattle: CattleClient,
        target: Target,
        hosts: Sequence[CattleHost],
        group: Sequence[CattleHost],
        missing: int,
    ) -> None:
        template = clone_template(group)
        if template is None:
            raise TargetRefused(
                f"host group {target.claims['hostSelector']} in project {target.claims['projectId']} has no "
                "machine-driver host to clone (custom hosts can't be created by Cattle)"
            )
        prefix = name_prefix(template)
        selector = parse_selector(target.claims["hostSelector"])
        on_the_way = [h for h in hosts if arriving(h, selector) and numbered(h.get("name"), prefix)]
        names = next_names(hosts, prefix, missing - len(on_the_way))
        for name in names:  # one at a time: a failure leaves a known prefix of the names created
            await cattle.create_host(target.claims["projectId"], clone_body(template, name))

    async def _wait(
        self,
        cattle: CattleClient,
        target: Target,
        selector: Mapping[str, str],
        desired: int,
        ctx: DriverContext,
    ) -> int:
        project_id = target.claims["projectId"]

        async def size() -> int:
            return len(members(await cattle.list_hosts(project_id), selector))

        return await wait_until(
            size,
            lambda n: n == desired,
            ctx,
            lambda n: (
                f"host group {target.claims['hostSelector']} did not reach {desired} hosts within "
                f"{ctx.confirm_timeout:g}s (has {n})"
            ),
        )


def matches(host: CattleHost, selector: Mapping[str, str]) -> bool:
    return labels_match(host.get("labels"), selector)


def members(hosts: Sequence[CattleHost], selector: Mapping[str, str]) -> list[CattleHost]:
    """The group: matching hosts in service, healthy or unhealthy, neither being created nor removed."""
    return [
        h
        for h in hosts
        if matches(h, selector)
        and h.get("transitioning") != "yes"
        and (h.get("state") == HEALTHY or h.get("state") in UNHEALTHY)
    ]


def arriving(host: CattleHost, selector: Mapping[str, str]) -> bool:
    """A matching host still being created (it will join the group when active)."""
    return matches(host, selector) and host.get("transitioning") == "yes" and host.get("state") not in LEAVING


def delete_option(receivers: Sequence[Receiver]) -> str:
    """The deleteOption of the target's down receivers; the first by name wins if they disagree."""
    for receiver in sorted(receivers, key=lambda r: r.key):
        config: ScaleHostConfig | None = cast(Mapping[str, Any], receiver.spec).get(CONFIG_FIELD)
        if config is not None and config["action"] == "down":
            return config.get("deleteOption", "mostRecent")
    return "mostRecent"


def removal_order(group: Sequence[CattleHost], delete_option: str | None) -> list[CattleHost]:
    """Unhealthy first, then the most (default) or least recently created."""
    newest_first = delete_option != "leastRecent"

    def key(host: CattleHost) -> tuple[bool, float]:
        created = float(host.get("createdTS") or 0) + id_order(host) / 1e6
        return host.get("state") == HEALTHY, -created if newest_first else created

    return sorted(group, key=key)


def id_order(host: CattleHost) -> int:
    digits = re.search(r"(\d+)$", host.get("id", ""))
    return int(digits.group(1)) if digits else 0


def driver_config(host: CattleHost) -> tuple[str, dict[str, Any]] | None:
    driver = host.get("driver")
    config = cast(dict[str, Any], host).get(f"{driver}Config") if driver else None
    return (f"{driver}Config", config) if isinstance(config, dict) else None


def clonable(host: CattleHost) -> bool:
    """Cattle can create another like it: through its host template, or from its ``<driver>Config``."""
    return bool(host.get("hostTemplateId")) or driver_config(host) is not None


def clone_template(group: Sequence[CattleHost]) -> CattleHost | None:
    """The member to clone: the oldest clonable one (by creation time, then by id)."""
    candidates = [h for h in group if clonable(h)]
    return min(candidates, key=lambda h: (h.get("createdTS") or 0, id_order(h)), default=None)


def short_name(name: str) -> str:
    """A host name without its domain: ``node01.example.com`` -> ``node01``."""
    return name.split(".", 1)[0]


def name_prefix(template: CattleHost) -> str:
    """The template's short name without its trailing number (the whole short name if it has none)."""
    name = short_name(template.get("name") or template.get("hostname") or "host")
    match = NUMBERED.match(name)
    return match.group(1) if match else name


def numbered(name: str | None, prefix: str) -> tuple[int, int] | None:
    """``<prefix>N`` (domain aside) as (N, how many digits it is written with); None for other names."""
    if not name:
        return None
    short = short_name(name)
    rest = short[len(prefix) :] if short.startswith(prefix) else ""
    return (int(rest), len(rest)) if rest.isdigit() else None


def next_names(hosts: Sequence[CattleHost], prefix: str, count: int) -> list[str]:
    """``count`` names after the highest ``<prefix>N`` among all the project's names and hostnames,
    zero-padded as that highest one is (``node09`` -> ``node10``, ``node99`` -> ``node100``)."""
    found = [n for h in hosts for name in (h.get("name"), h.get("hostname")) if (n := numbered(name, prefix))]
    highest, width = max(found, default=(UNNUMBERED, 1))
    return [f"{prefix}{highest + i:0{width}d}" for i in range(1, count + 1)]


def clone_body(template: CattleHost, name: str) -> dict[str, Any]:
    """The create of a host like ``template``: through its host template when it has one, else with its
    ``<driver>Config`` (exactly one of the two, as Cattle requires)."""
    raw = cast(dict[str, Any], template)
    labels = {k: v for k, v in (template.get("labels") or {}).items() if not k.startswith(AGENT_LABEL_PREFIX)}
    body: dict[str, Any] = {"hostname": name, "name": name, "labels": labels}
    if template.get("hostTemplateId"):
        body["hostTemplateId"] = template["hostTemplateId"]
    else:
        found = driver_config(template)
        assert found is not None  # clone_template picked a clonable host
        config_field, config = found
        body[config_field] = config
    body.update({f: raw[f] for f in CLONED_FIELDS if raw.get(f) is not None})
    return body


DRIVER = ScaleHostDriver()
