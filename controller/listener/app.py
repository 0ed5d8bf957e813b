"""Builds the listener's aiohttp application from explicit dependencies.

Everything the views need arrives in one frozen ``ListenerDeps`` (``controller.listener.deps``, kept
on the app under ``LISTENER_DEPS`` for whoever wires the service); the listener's own state — the
rate limit of pass-through hits, the counts of its summary line — is made here, per app, so two apps
in one process (as in tests) never share it. The summary line is written by a task that lives as
long as the app (``cleanup_ctx``).

``client_max_size`` is the body limit, so aiohttp refuses a chunked body over it while reading; the
handler also checks Content-Length first to refuse without reading at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.listener.deps import ListenerDeps, readiness
from controller.listener.errors import error_middleware
from controller.listener.handlers import Handlers
from controller.listener.ratelimit import RateLimiter
from controller.listener.summary import HitSummary, log_summaries
from controller.metrics import Metrics

TRIGGER_PATH = "/v1-webhooks/endpoint"


View = Callable[[web.Request], Awaitable[web.Response]]

LISTENER_DEPS: web.AppKey[ListenerDeps] = web.AppKey("listener_deps", ListenerDeps)
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter", RateLimiter)
HIT_SUMMARY: web.AppKey[HitSummary] = web.AppKey("hit_summary", HitSummary)


def build_app(deps: ListenerDeps) -> web.Application:
    app = web.Application(client_max_size=deps.settings.max_body_bytes, middlewares=[error_middleware])
    app[LISTENER_DEPS] = deps
    app[RATE_LIMITER] = RateLimiter(clock=deps.clock)
    app[HIT_SUMMARY] = HitSummary()
    app.cleanup_ctx.append(_summaries)
    health = deps.health or readiness(deps.store, deps.receiver_set)
    handlers = Handlers(deps, app[RATE_LIMITER], health, app[HIT_SUMMARY])
    app.router.add_post(TRIGGER_PATH, handlers.trigger)
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/readyz", handlers.readyz)
    if not deps.settings.metrics_host:  # else /metrics has its own port (``metrics_app``)
        app.router.add_get("/metrics", metrics_view(deps.metrics))
    return app


async def _summaries(app: web.Application) -> AsyncIterator[None]:
    interval = app[LISTENER_DEPS].settings.log_summary_interval
    task = asyncio.create_task(log_summaries(app[HIT_SUMMARY], interval), name="listener summary")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def metrics_view(metrics: Metrics) -> View:
    async def view(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return view


def metrics_app(metrics: Metrics, page: View | None = None) -> web.Application:
    """``/metrics`` (and the status ``page`` at ``/``) alone, for ``--metrics-listen``: a port a
    NetworkPolicy can open to Prometheus and operators only, apart from the trigger endpoint that
    senders on the internet reach."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_view(metrics))
    if page is not None:
        app.router.add_get("/", page)
    return app
