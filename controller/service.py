"""``webhook-service run``: builds the parts once, wires them explicitly, runs until SIGTERM/SIGINT.

Start-up order matters: the store opens and the receivers folder is loaded *before* the listener
accepts anything, so the first hit already sees every receiver; the reconciler then picks up
intents an earlier run left pending. Shutdown is the reverse: stop accepting, finish or cancel the
reconcile passes (what they recorded stays recorded), close the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

from controller.backoff import Backoff
from controller.cattle.client import CattleClient
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.listener.app import ListenerDeps, build_app, readiness
from controller.listener.server import start_listener
from controller.listener.signature import SignatureSecrets
from controller.memory import trim_heap_periodically
from controller.metrics import Metrics
from controller.receivers.sync import ReceiverSync
from controller.receivers.watcher import ReceiverWatcher
from controller.reconciler import Reconciler
from controller.redact import mask_url
from controller.registry import ReceiverRegistry
from controller.sandbox.app import SandboxOptions, run_sandbox
from controller.sandbox.seed import load_seed
from controller.settings import Settings
from controller.statedir import secure_state_dir
from controller.store.sqlite import SqliteStore
from controller.store.sqlite_schema import DB_NAME
from controller.tokens import KeyRing, TokenVerifier, trigger_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CattleEndpoint:
    url: str
    access_key: str | None
    secret_key: str | None
    label: str  # what ``status`` and ``make run`` show: the URL, or that it is the SANDBOX


@contextlib.asynccontextmanager
async def cattle_endpoint(settings: Settings) -> AsyncIterator[CattleEndpoint]:
    """The Cattle API to talk to: the configured one, or an embedded sandbox on a loopback port."""
    if not settings.uses_sandbox:
        url = settings.cattle_url.rstrip("/")
        # The URL may carry the API keys (http://ACCESS:SECRET@host/v2-beta): the label never does.
        label = mask_url(url)
        yield CattleEndpoint(url, settings.cattle_access_key, settings.cattle_secret_key, label=label)
        return
    seed = load_seed(settings.sandbox_seed) if settings.sandbox_seed else None  # None: the default world
    runner = await run_sandbox("127.0.0.1", 0, seed, SandboxOptions())
    try:
        port = runner.addresses[0][1]
        logger.warning(
            "SANDBOX: Cattle is emulated in-process at http://127.0.0.1:%d/v2-beta, not Rancher", port
        )
        url = f"http://127.0.0.1:{port}/v2-beta"
        yield CattleEndpoint(url, None, None, label=f"SANDBOX (emulated in-process at {url}, not Rancher)")
    finally:
        await runner.cleanup()


def cattle_client(
    session: aiohttp.ClientSession, endpoint: CattleEndpoint, settings: Settings, metrics: Metrics
) -> CattleClient:
    return CattleClient(
        session,
        base_url=endpoint.url,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        timeout=settings.cattle_timeout,
        metrics=metrics,
    )


async def run_service(settings: Settings, *, print_urls: bool = False) -> None:
    secure_state_dir(settings.state_dir)  # 0700, its files 0600, whatever an older run left
    metrics = Metrics()
    keyring = KeyRing.load_or_create(settings.state_dir / "keys")
    store = SqliteStore(settings.state_dir / DB_NAME, retention=settings.hit_retention_days * 86400)
    await store.open()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await store.set_meta("public_url", settings.base_url)
        logger.info("store durability: %s", await store.pragmas())
        async with cattle_endpoint(settings) as endpoint, aiohttp.ClientSession() as session:
            await store.set_meta("cattle", endpoint.label)
            await serve(settings, store, keyring, metrics, endpoint, session, stop, print_urls)
    finally:
        await store.close()
        logger.info("stopped")


async def serve(
    settings: Settings,
    store: SqliteStore,
    keyring: KeyRing,
    metrics: Metrics,
    endpoint: CattleEndpoint,
    session: aiohttp.ClientSession,
    stop: asyncio.Event,
    print_urls: bool,
) -> None:
    drivers = load_drivers()
    registry = ReceiverRegistry()
    sync = ReceiverSync(store=store, keyring=keyring, registry=registry, metrics=metrics)
    watcher = ReceiverWatcher(
        directory=settings.receivers_dir,
        drivers=drivers,
        sync=sync,
        store=store,
        metrics=metrics,
        interval=settings.watch_interval,
    )
    await watcher.scan_once()
    cattle = cattle_client(session, endpoint, settings, metrics)
    ctx = DriverContext(
        cattle=cattle, confirm_timeout=settings.confirm_timeout, receivers_of=registry.receivers_of
    )
    reconciler = Reconciler(
        store=store,
        drivers=drivers,
        ctx=ctx,
        metrics=metrics,
        backoff=Backoff(base=settings.backoff_base, cap=settings.backoff_cap),
        resync_interval=settings.resync_interval,
    )
    health = readiness(store, registry)
    health.add_note("manifests", watcher.problems_note)
    app = build_app(
        ListenerDeps(
            settings=settings,
            registry=registry,
            verifier=TokenVerifier(keyring, cache_size=settings.token_cache_size),
            store=store,
            drivers=drivers,
            metrics=metrics,
            wake=reconciler.wake,
            signatures=SignatureSecrets(kube=None),
            driver_ctx=ctx,
            health=health,
        )
    )
    runner = await start_listener(app, settings)
    logger.info(
        "listening on %s:%d; trigger URLs start with %s",
        settings.listen_host,
        settings.listen_port,
        settings.base_url,
    )
    if print_urls:
        print_trigger_urls(settings, registry, endpoint.label)
    tasks = [
        asyncio.create_task(watcher.run(), name="watcher"),
        asyncio.create_task(reconciler.run(), name="reconciler"),
        asyncio.create_task(trim_heap_periodically(), name="heap-trim"),
    ]
    try:
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def print_trigger_urls(settings: Settings, registry: ReceiverRegistry, cattle: str) -> None:
    """For ``make run``: the URLs go to stdout for the person at the terminal, never into the logs."""
    print(f"Cattle: {cattle}", flush=True)
    actives = sorted(registry, key=lambda a: a.key)
    if not actives:
        print(f"No receivers in {settings.receivers_dir} yet.", flush=True)
        return
    print("Trigger URLs (try them with curl):", flush=True)
    for active in actives:
        url = trigger_url(settings.base_url, active.token, active.receiver.target.project_id)
        print(f"  {active.key}  ({active.receiver.driver} {active.receiver.target.key})", flush=True)
        print(f"    curl -X POST '{url}'", flush=True)
    print(f"Then: webhook-service status --state {settings.state_dir}", flush=True)
