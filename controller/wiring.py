"""One factory for ``run`` and ``operator``: the listener app, the reconciler and the driver context, and
the order in which their long-lived resources start and stop.

The modes differ in where receivers, keys and intents live (a folder, files and SQLite; or the
Kubernetes API) and in who drives the reconciler, not in how a hit becomes a scale. So each mode
makes its store, receiver set and verifier and hands them to ``wire``, which builds the rest the same way
for both; ``controller.service`` and ``controller.operator.app`` keep only what is their own.

``wire`` only makes objects: nothing is opened, started or served yet (the embedded sandbox's port
is bound, so its URL is known to the Cattle client). Everything with a lifetime is an entry of the
app's ``cleanup_ctx``, which aiohttp enters in order when the listener's runner is set up — before
any site accepts a connection — and leaves in reverse once the sites stop accepting and the requests
in flight are answered. The order, declared here once:

1. the HTTP session the Cattle clients share (closed after everything that could use it);
2. the embedded Cattle sandbox, when ``settings.cattle_url`` is ``sandbox``;
3. the store opens (and closes after the reconciler has stopped);
4. the mode's ``startup`` entries, in order: the receivers are loaded here, so the first hit and the
   reconciler's first pass already see every receiver;
5. the reconciler. When hits wake it (no ``wake`` given: ``run``), its loop runs here too, picking up
   intents an earlier run left pending and resyncing; otherwise (``operator``) its passes are started
   by whoever drives it. Either way its passes are cancelled on the way out: what they recorded
   stays recorded, and the next start finishes it;
6. heap trimming (``controller.memory``), and ``/metrics`` and the status page on their own port when
   ``--metrics-listen`` is given;
7. what the mode appends to ``app.cleanup_ctx`` after ``wire`` returns: started last, stopped first
   (kopf, whose handlers wake the reconciler, stops before the reconciler does).

An entry that fails to start makes aiohttp leave the entries already entered, in reverse, so a
half-started service closes what it opened. Tests serve the same app (``aiohttp_client``), so the
store a test hands to ``wire`` is opened and closed by the app as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from controller.backoff import Backoff
from controller.cattle.endpoint import CattleEndpoint, EmbeddedSandbox, cattle_client, configured_endpoint
from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverSet
from controller.health import Health
from controller.kube.client import KubeClient
from controller.listener.app import View, build_app, metrics_app
from controller.listener.deps import ListenerDeps, readiness
from controller.listener.receivers_api import ReceiversApiDeps, add_receivers_api
from controller.listener.server import start_listener
from controller.listener.signature import SignatureSecrets
from controller.memory import trim_heap_periodically
from controller.metrics import Metrics
from controller.operator.cattle import SecretCattleClients
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import ApiReceiverStore
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler
from controller.settings import Settings
from controller.status.live import LiveStatus, status_page
from controller.store.base import IntentStore
from controller.tokens import TokenVerifier

NO_CATTLE = "none (no --cattle-url)"  # the Cattle label when no default Cattle is configured


def cattle_label(cattle: CattleEndpoint | None) -> str:
    """How the default Cattle is shown (status, the page, ``--print-urls``): masked, or NO_CATTLE."""
    return NO_CATTLE if cattle is None else cattle.label


CleanupCtx = Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class Wiring:
    """What ``wire`` built: the listener app, and the parts the modes hand to their own loops."""

    settings: Settings
    app: web.Application
    reconciler: Reconciler
    driver_ctx: DriverContext
    health: Health  # what /readyz reports; a mode may add its own checks and notes
    cattle: CattleEndpoint | None  # the default Cattle; None: only receivers' own credentials reach one

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[web.AppRunner]:
        """Start every entry, then accept on ``settings.listen_host:listen_port``; stop it all on exit."""
        runner = await start_listener(self.app, self.settings)
        try:
            yield runner
        finally:
            await runner.cleanup()


WIRING: web.AppKey[Wiring] = web.AppKey("wiring", Wiring)


def wire(
    settings: Settings,
    *,
    store: IntentStore,
    receiver_set: ReceiverSet,
    verifier: TokenVerifier,
    drivers: DriverSet,
    metrics: Metrics,
    kube: KubeClient | None = None,
    wake: Callable[[str], None] | None = None,
    startup: Sequence[CleanupCtx] = (),
    signatures: SignatureSecrets | None = None,
    api_receivers: ApiReceiverStore | None = None,
    clock: Callable[[], float] = time.time,
) -> Wiring:
    """Build the listener app around ``store`` and ``receiver_set``, its resources as ``cleanup_ctx`` entries.

    ``kube``: the operator's client — Kubernetes drivers, receivers' own Cattle credentials
    (``cattleSecretRef``) and signature ``secretRef``s work with it. ``wake``: what an accepted hit
    calls with its target id instead of this app's reconciler (see the module docstring).
    ``startup``: the mode's entries that must be entered before the reconciler starts and the
    listener accepts (loading the receivers). ``api_receivers``: where the receivers API keeps the
    receivers it creates (``controller.listener.receivers_api``; without it the API is not served).
    ``signatures`` and ``clock`` are for tests.
    """
    sandbox = EmbeddedSandbox.reserve(settings.sandbox_seed) if settings.uses_sandbox else None
    cattle = sandbox.endpoint if sandbox is not None else configured_endpoint(settings)
    session = aiohttp.ClientSession()
    driver_ctx = DriverContext(
        cattle=None if cattle is None else cattle_client(session, cattle, settings, metrics),
        kube=kube,
        cattle_clients=(
            None
            if kube is None
            else SecretCattleClients(kube, session, metrics, timeout=settings.cattle_timeout)
        ),
        confirm_timeout=settings.confirm_timeout,
        receivers_of=receiver_set.receivers_of,
    )
    reconciler = Reconciler(
        store=store,
        drivers=drivers,
        ctx=driver_ctx,
        metrics=metrics,
        backoff=Backoff(base=settings.backoff_base, cap=settings.backoff_cap),
        resync_interval=settings.resync_interval,
    )
    health = readiness(store, receiver_set)
    deps = ListenerDeps(
        settings=settings,
        receiver_set=receiver_set,
        verifier=verifier,
        store=store,
        drivers=drivers,
        metrics=metrics,
        wake=reconciler.wake if wake is None else wake,
        clock=clock,
        signatures=SignatureSecrets(kube=kube) if signatures is None else signatures,
        driver_ctx=driver_ctx,
        health=health,
    )
    app = build_app(deps)
    page = status_page(
        LiveStatus(
            receiver_set=receiver_set,
            store=store,
            drivers=drivers,
            health=health,
            cattle_label=cattle_label(cattle),
            clock=clock,
        )
    )
    if not settings.metrics_host:  # else next to /metrics on its own port (``serving_metrics``)
        app.router.add_get("/", page)
    if api_receivers is not None:
        api = ReceiversApiDeps(
            settings=settings,
            receivers=api_receivers,
            receiver_set=receiver_set,
            drivers=drivers,
            schema=ReceiverSchema.load(drivers.values()),
            session=session,
            # Callers' own keys go to Cattle, never the service's (which a URL may carry).
            cattle_url=None if cattle is None else str(URL(cattle.url).with_user(None)),
        )
        add_receivers_api(app, api)
    wiring = Wiring(settings, app, reconciler, driver_ctx, health, cattle)
    app[WIRING] = wiring
    app.cleanup_ctx.append(closing(session))
    if sandbox is not None:
        app.cleanup_ctx.append(sandbox.serving)
    app.cleanup_ctx.append(opened(store))
    app.cleanup_ctx.extend(startup)
    app.cleanup_ctx.append(reconciling(reconciler, resync=wake is None))
    app.cleanup_ctx.append(background("heap-trim", trim_heap_periodically))
    if settings.metrics_host:
        app.cleanup_ctx.append(serving_metrics(settings, metrics, page))
    return wiring


def serving_metrics(settings: Settings, metrics: Metrics, page: View) -> CleanupCtx:
    """``/metrics`` and the status page on ``--metrics-listen``, from start-up to shutdown of the
    listener's app."""

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(metrics_app(metrics, page), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
            yield
        finally:
            await runner.cleanup()

    return entry


def closing(session: aiohttp.ClientSession) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await session.close()

    return entry


def opened(store: IntentStore) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        await store.open()
        try:
            yield
        finally:
            await store.close()

    return entry


def reconciling(reconciler: Reconciler, *, resync: bool) -> CleanupCtx:
    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        try:
            if resync:
                async with running(reconciler.run(), "reconciler"):
                    yield
            else:
                yield
        finally:
            await reconciler.stop()

    return entry


def background(name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> CleanupCtx:
    """An entry that runs ``run()`` as a task from start-up until it is cancelled at shutdown."""

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        async with running(run(), name):
            yield

    return entry


@contextlib.asynccontextmanager
async def running(coro: Coroutine[Any, Any, None], name: str) -> AsyncIterator[asyncio.Task[None]]:
    """``coro`` as a task until exit, then cancelled and waited for (its own failure is not re-raised)."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def stop_on_signals() -> asyncio.Event:
    """An event SIGTERM and SIGINT set: what both modes run until, to stop in order instead of dying."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
