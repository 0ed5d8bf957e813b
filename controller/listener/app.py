"""Builds the listener's aiohttp application from explicit dependencies.

Everything the views need arrives in one frozen ``ListenerDeps`` (``controller.listener.deps``, kept
on the app under ``LISTENER_DEPS`` for whoever wires the service); the listener's own state — the
rate limit of pass-through hits — is made here, per app, so two apps in one process (as in tests)
never share it.

``client_max_size`` is the body limit, so aiohttp refuses a chunked body over it while reading; the
handler also checks Content-Length first to refuse without reading at all.
"""

from __future__ import annotations

from aiohttp import web

from controller.listener.deps import ListenerDeps, readiness
from controller.listener.errors import error_middleware
from controller.listener.handlers import Handlers
from controller.listener.ratelimit import RateLimiter

TRIGGER_PATH = "/v1-webhooks/endpoint"


LISTENER_DEPS: web.AppKey[ListenerDeps] = web.AppKey("listener_deps", ListenerDeps)
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter", RateLimiter)


def build_app(deps: ListenerDeps) -> web.Application:
    app = web.Application(client_max_size=deps.settings.max_body_bytes, middlewares=[error_middleware])
    app[LISTENER_DEPS] = deps
    app[RATE_LIMITER] = RateLimiter(clock=deps.clock)
    health = deps.health or readiness(deps.store, deps.receiver_set)
    handlers = Handlers(deps, app[RATE_LIMITER], health)
    app.router.add_post(TRIGGER_PATH, handlers.trigger)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    app.router.add_get("/metrics", handlers.metrics)
    return app
