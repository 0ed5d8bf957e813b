"""``forwardPost``: pass a hit through to a Cattle service, via Cattle's proxy, synchronously.

It is the one driver that is not an intent: it is a ``Forwarder`` (``controller.drivers.contract``),
so the listener answers each hit with the upstream's status and body and records nothing. As every
driver it has a ``check`` and a ``target``, so the loader, the registry and tokens treat it like any
receiver.

The hit goes on as Rancher's driver sent it: its body, its query (without the token parameters) and
its headers, so a GitHub push keeps ``X-Hub-Signature`` and ``X-GitHub-Event`` (the Rancher Pipeline
refuses a hook without them). ``controller.drivers.contract.forwarded_headers`` says which headers stay
behind: hop-by-hop ones, the listener's own, and any that carries the trigger token.

``port`` may be a string of digits as well as an integer, because Rancher's API stored it as a string
and the Rancher Pipeline still sends ``"port": "60080"``; ``forward_config`` makes it an integer, so
both spellings name one target.

The upstream is bounded: ``TIMEOUT`` seconds for the whole answer and ``MAX_ANSWER_BYTES`` of body.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict, cast

from controller.cattle.errors import CattleAnswerTooLarge, CattleTimeout, CattleUnavailable
from controller.drivers.base import CATTLE_SECRET_CLAIM, DriverContext, TargetRefused, project_id_schema
from controller.drivers.contract import (
    ConfigSchema,
    ForwardAnswer,
    ForwardedHit,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
    config_of,
)
from controller.manifest import ReceiverSpec
from controller.model import Problem, Receiver, Target

logger = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds for the upstream's whole answer
MAX_ANSWER_BYTES = 1024 * 1024  # the upstream's body, at most
CONFIG_FIELD = "forwardPostConfig"


class ForwardPostConfig(TypedDict):
    projectId: str
    serviceName: str
    port: int  # the spec may spell it as a string of digits; forward_config makes it an integer
    path: NotRequired[str]  # default "/"


CONFIG_SCHEMA: ConfigSchema = {
    "type": "object",
    "description": (
        "Settings of the forwardPost driver (required when driver is forwardPost): each hit's body, "
        "query (without the token parameters) and headers (without hop-by-hop ones, the listener's "
        "own such as Host and Authorization, and any carrying the token) are POSTed to this service through "
        "Cattle's proxy, and the hit is answered with the upstream's status and body. Nothing is "
        f"recorded or retried; the upstream has {TIMEOUT:g} seconds and {MAX_ANSWER_BYTES // 2**20} MiB."
    ),
    "required": ["projectId", "serviceName", "port"],
    "properties": {
        "projectId": project_id_schema("the service"),
        "serviceName": {
            "type": "string",
            "minLength": 1,
            "maxLength": 253,
            "pattern": "^[a-zA-Z0-9]([-a-zA-Z0-9._]*[a-zA-Z0-9])?$",
            "description": "The name of the Cattle service to forward to, like web.",
        },
        "port": {
            # The API server's structural form: bare types in the anyOf, limits beside it (minimum and
            # maximum apply to an integer, pattern to a string). Limits inside the anyOf are refused.
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "minimum": 1,
            "maximum": 65535,
            "pattern": "^[0-9]{1,5}$",
            "description": (
                "The service's port that receives the forwarded hit: 1..65535, as an integer or as a string "
                'of digits ("60080", as the Rancher Pipeline sends it).'
            ),
        },
        "path": {
            "type": "string",
            "default": "/",
            "description": 'The path to POST to on the service; starts with "/". Default "/".',
        },
    },
}


def forward_config(spec: ReceiverSpec) -> ForwardPostConfig:
    """The spec's config with its port as an integer (the schema has checked that it is digits)."""
    raw: Mapping[str, Any] = config_of(spec, CONFIG_FIELD)
    config = cast(ForwardPostConfig, {**raw, "port": int(raw["port"])})
    return config


class ForwardPostDriver:
    name = "forwardPost"
    config_field = CONFIG_FIELD
    config_schema = CONFIG_SCHEMA
    summary = (
        "forwardPost is not an action but a synchronous pass-through: each hit's body is posted to a "
        "Cattle service through Cattle's proxy and its answer is the hit's answer; its settings go in "
        "forwardPostConfig."
    )

    def __init__(self, *, timeout: float = TIMEOUT, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        config = forward_config(spec)
        problems = []
        if not 1 <= config["port"] <= 65535:
            problems.append(
                Problem("spec.forwardPostConfig.port", f"port {config['port']} is not in 1..65535")
            )
        path = config.get("path", "/")
        if not path.startswith("/"):
            problems.append(Problem("spec.forwardPostConfig.path", f"path {path!r} must start with '/'"))
        elif "?" in path or "#" in path:
            problems.append(
                Problem("spec.forwardPostConfig.path", f"path {path!r} must not hold a query or fragment")
            )
        return problems

    def action(self, spec: ReceiverSpec) -> str:
        return "forward each hit (synchronous pass-through)"

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = forward_config(spec)
        ref = spec.get("cattleSecretRef")
        secret = f"{namespace}/{ref['name']}" if ref else None
        return self._target(config["projectId"], config["serviceName"], config["port"], secret)

    def target_from_key(self, key: str) -> Target:
        service, _, secret = key.partition("@")
        project_id, _, endpoint = service.partition("/")
        service_name, _, port = endpoint.rpartition(":")
        return self._target(project_id, service_name, int(port), secret or None)

    def _target(self, project_id: str, service_name: str, port: int, secret: str | None) -> Target:
        claims = {"projectId": project_id, "serviceName": service_name, "port": str(port)}
        if secret is not None:
            claims[CATTLE_SECRET_CLAIM] = secret
        return Target(
            driver=self.name,
            key=f"{project_id}/{service_name}:{port}" + (f"@{secret}" if secret else ""),
            project_id=project_id,
            claims=claims,
        )

    async def forward(self, receiver: Receiver, hit: ForwardedHit, ctx: DriverContext) -> ForwardAnswer:
        config = forward_config(receiver.spec)
        try:
            cattle = await ctx.cattle_for(receiver.target)
            status, body, content_type = await cattle.proxy_post(
                config["projectId"],
                config["serviceName"],
                config["port"],
                config.get("path", "/"),
                hit.query,
                hit.body,
                hit.content_type,
                headers=hit.headers,
                timeout=self.timeout,
                max_bytes=self.max_bytes,
            )
        except CattleTimeout as e:
            logger.warning("[%s] forwarding timed out: %s", receiver.key, e)
            raise UpstreamTimeout(f"The upstream did not answer within {self.timeout:g}s.") from e
        except CattleAnswerTooLarge as e:
            logger.warning("[%s] upstream answer too large: %s", receiver.key, e)
            raise UpstreamTooLarge(f"The upstream's answer is larger than {self.max_bytes} bytes.") from e
        except (CattleUnavailable, TargetRefused) as e:
            logger.warning("[%s] cannot forward: %s", receiver.key, e)
            raise UpstreamUnavailable("Cattle's proxy could not be reached.") from e
        return ForwardAnswer(status=status, body=body, content_type=content_type)


DRIVER = ForwardPostDriver()
