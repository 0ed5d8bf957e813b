"""``forwardPost``: pass a hit's body through to a Cattle service, via Cattle's proxy, synchronously.

It is the one driver that is not an intent: the listener sees that it is a ``Forwarder``
(``controller.forwarding``) and answers each hit with the upstream's status and body, recording
nothing. It still implements the scale driver's methods, so the loader, the registry and tokens
treat it like any receiver (``check``, ``target``); ``intent`` / ``observe`` / ``apply`` refuse,
since no intent of it is ever recorded.

The upstream is bounded: ``TIMEOUT`` seconds for the whole answer and ``MAX_ANSWER_BYTES`` of body.
"""

from __future__ import annotations

import logging

from controller.bodies import ReceiverSpec
from controller.cattle.errors import CattleAnswerTooLarge, CattleTimeout, CattleUnavailable
from controller.drivers.base import CATTLE_SECRET_CLAIM, DriverContext, TargetRefused
from controller.forwarding import (
    ForwardAnswer,
    ForwardedHit,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnavailable,
)
from controller.model import Problem, Receiver, ScaleIntent, Target

logger = logging.getLogger(__name__)

TIMEOUT = 10.0  # seconds for the upstream's whole answer
MAX_ANSWER_BYTES = 1024 * 1024  # the upstream's body, at most
NOT_AN_INTENT = "forwardPost is not an intent: its hits are forwarded synchronously, never recorded"


class ForwardPostDriver:
    name = "forwardPost"
    config_field = "forwardPostConfig"

    def __init__(self, *, timeout: float = TIMEOUT, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        config = spec["forwardPostConfig"]
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

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        config = spec["forwardPostConfig"]
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

    def intent(self, spec: ReceiverSpec) -> ScaleIntent:
        raise TargetRefused(NOT_AN_INTENT)

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        raise TargetRefused(NOT_AN_INTENT)

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        raise TargetRefused(NOT_AN_INTENT)

    async def forward(self, receiver: Receiver, hit: ForwardedHit, ctx: DriverContext) -> ForwardAnswer:
        config = receiver.spec["forwardPostConfig"]
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
