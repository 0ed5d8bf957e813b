"""Builds the listener's aiohttp application from explicit dependencies.

Everything the views need arrives in one frozen ``ListenerDeps`` (kept on the app under
``LISTENER_DEPS`` for whoever wires the service); the listener's own state — the rate limit of
pass-through hits — is made here, per app, so two apps in one process (as in tests) never share it.

``client_max_size`` is the body limit, so aiohttp refuses a chunked body over it while reading; the
handler also checks Content-Length first to refuse without reading at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverSet
from controller.health import Health
from controller.listener.errors import error_middleware
from controller.listener.handlers import Handlers
from controller.listener.ratelimit import RateLimiter
from controller.listener.signature import SignatureSecrets
from controller.metrics import Metrics
from controller.registry import ReceiverRegistry
from controller.settings import Settings
from controller.store.base import IntentStore
from controller.tokens import TokenVerifier

TRIGGER_PATH = "/v1-webhooks/endpoint"


@dataclass(frozen=True)
class ListenerDeps:
    settings: Settings
    registry: ReceiverRegistry
    verifier: TokenVerifier
    store: IntentStore
    drivers: DriverSet
    metrics: Metrics
    wake: Callable[[str], None]  # called with the target id after a hit is recorded as "accepted"
    clock: Callable[[], float] = time.time
    # Receivers' sender secrets (spec.signature); without a Kubernetes client only secretFile works.
    signatures: SignatureSecrets = field(default_factory=SignatureSecrets)
    # What pass-through drivers (Forwarders) forward with; None: they answer 502.
    driver_ctx: DriverContext | None = None
    # What /readyz reports; built by ``readiness`` unless the wiring adds checks of its own.
    health: Health | None = None


def readiness(store: IntentStore, registry: ReceiverRegistry) -> Health:
    """The checks every listener has: the store accepts writes, and the receivers were loaded."""
    health = Health()
    health.add("store", lambda: store.unavailable_reason())
    health.add("receivers", lambda: None if registry.loaded else "the receivers are not loaded yet")
    return health


LISTENER_DEPS: web.AppKey[ListenerDeps] = web.AppKey("listener_deps", ListenerDeps)
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter", RateLimiter)


def build_app(deps: ListenerDeps) -> web.Application:
    app = web.Application(client_max_size=deps.settings.max_body_bytes, middlewares=[error_middleware])
    app[LISTENER_DEPS] = deps
    app[RATE_LIMITER] = RateLimiter(clock=deps.clock)
    health = deps.health or readiness(deps.store, deps.registry)
    handlers = Handlers(deps, app[RATE_LIMITER], health)
    app.router.add_post(TRIGGER_PATH, handlers.trigger)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    return app
