"""``webhook-service operator``: kopf, the informer and the listener in one process.

What runs, and where:

- in every replica: the listener (hits are recorded in IntentLedgers with compare-and-swap, so any
  replica may accept them), the Receiver informer that feeds the listener's registry, and the key
  watcher;
- in the active replica only (kopf peering: each replica takes a random priority, so exactly one is
  highest and the others pause): the kopf handlers — tokens, Secrets, status, Events — and, through
  them, the reconciler, which folds intents and applies them.

Credentials are found the way kubectl and kopf find them: in-cluster service account first, then
``KUBECONFIG`` or ``~/.kube/config``. The same ``ConnectionInfo`` serves kopf (through a login
handler on this operator's own registry) and our client, so both talk to the same API as the same
user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
from aiohttp import web

from controller.backoff import Backoff
from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.kube.client import KubeClient
from controller.kube.errors import KubeError
from controller.listener.app import ListenerDeps, build_app
from controller.listener.server import start_listener
from controller.listener.signature import SignatureSecrets
from controller.memory import trim_heap_periodically
from controller.metrics import Metrics
from controller.operator import handlers
from controller.operator.cattle import SecretCattleClients
from controller.operator.informer import ReceiverInformer
from controller.operator.keys import KeyWatcher, load_or_create_keyring
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler
from controller.registry import ReceiverRegistry
from controller.service import CattleEndpoint, cattle_client, cattle_endpoint
from controller.settings import Settings
from controller.store.kube import KubeStore
from controller.tokens import TokenVerifier

logger = logging.getLogger(__name__)


def discover_connection() -> kopf.ConnectionInfo:
    """In-cluster service account, else kubeconfig; a clear error when there is neither."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise KubeError(
            "no Kubernetes credentials: not in a pod with a service account, no KUBECONFIG, no ~/.kube/config"
        )
    return info


def kopf_settings(settings: Settings) -> kopf.OperatorSettings:
    config = kopf.OperatorSettings()
    config.peering.name = settings.peering_name
    config.peering.mandatory = True
    config.peering.clusterwide = True
    # Kopf freezes every replica when two share a priority; a random one makes exactly one the highest.
    config.peering.priority = random.randint(1, 2**31)
    # Kopf's bookkeeping goes into annotations, never into status (its schema is ours), under a prefix
    # of its own: kopf ignores changes to annotations under its prefix, and ours (token-generation)
    # must count as changes.
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.webhook-service.dev")
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.webhook-service.dev")
    config.persistence.finalizer = "webhook-service.dev/revoke-token"
    config.posting.level = logging.WARNING  # our handlers post their own Events
    config.watching.server_timeout = 300
    # The handled resources are fixed; without scanning, kopf needs no list/watch on CRDs (least privilege).
    config.scanning.disabled = True
    return config


@dataclass
class Operator:
    """One operator instance's parts, for ``run_operator`` and for tests that drive it in-process."""

    settings: Settings
    client: KubeClient
    registry: ReceiverRegistry
    store: KubeStore
    reconciler: Reconciler
    listener: web.AppRunner
    tasks: list[asyncio.Task[Any]]
    stop_flag: asyncio.Event

    @property
    def port(self) -> int:
        site = next(iter(self.listener.sites))
        server = getattr(site, "_server", None)
        assert server is not None and server.sockets
        return int(server.sockets[0].getsockname()[1])


@contextlib.asynccontextmanager
async def operator(settings: Settings, info: kopf.ConnectionInfo) -> AsyncIterator[Operator]:
    """Start everything; stop it all (kopf gracefully) on exit."""
    metrics = Metrics()
    client = KubeClient.from_connection(info)
    try:
        keyring = await load_or_create_keyring(client, settings.namespace)
        verifier = TokenVerifier(keyring, cache_size=settings.token_cache_size)
        keys = handlers.KeyHolder(keyring)
        store = KubeStore(client, settings.namespace)
        await store.open()
        drivers = load_drivers()
        schema = ReceiverSchema.load()
        registry = ReceiverRegistry()
        informer = ReceiverInformer(client, registry, drivers, schema)
        await informer.relist()
        async with default_cattle(settings) as endpoint, aiohttp.ClientSession() as session:
            cattle = None
            if endpoint is not None:
                logger.info("default Cattle: %s", endpoint.label)
                cattle = cattle_client(session, endpoint, settings, metrics)
            else:
                logger.info(
                    "no default Cattle (CATTLE_URL unset): scaleService receivers need cattleSecretRef"
                )
            # One context for the reconciler and the listener (pass-through drivers forward with it).
            driver_ctx = DriverContext(
                cattle=cattle,
                kube=client,
                cattle_clients=SecretCattleClients(client, session, metrics, timeout=settings.cattle_timeout),
                confirm_timeout=settings.confirm_timeout,
                receivers_of=registry.receivers_of,
            )
            reconciler = Reconciler(
                store=store,
                drivers=drivers,
                ctx=driver_ctx,
                metrics=metrics,
                backoff=Backoff(base=settings.backoff_base, cap=settings.backoff_cap),
                resync_interval=settings.resync_interval,
            )
            # Hits only record; the active replica learns of them from the ledger's watch event, so
            # a standby replica's listener never folds.
            deps = ListenerDeps(
                settings=settings,
                registry=registry,
                verifier=verifier,
                store=store,
                drivers=drivers,
                metrics=metrics,
                wake=lambda _target: None,
                signatures=SignatureSecrets(kube=client),
                driver_ctx=driver_ctx,
            )
            runner = await start_listener(build_app(deps), settings)
            logger.info("listening on %s:%d", settings.listen_host, settings.listen_port)

            kopf_registry = kopf.OperatorRegistry()
            kopf.on.login(registry=kopf_registry)(lambda **_: info)
            operator_deps = handlers.OperatorDeps(
                client=client,
                keys=keys,
                registry=registry,
                reconciler=reconciler,
                drivers=drivers,
                schema=schema,
                base_url=settings.base_url,
                namespace=settings.namespace,
            )
            receiver_handlers = handlers.register(
                kopf_registry, operator_deps, resync_interval=settings.resync_interval
            )
            key_watcher = KeyWatcher(
                client,
                settings.namespace,
                verifier,
                lambda ring: setattr(keys, "keyring", ring),
                keyring,
                interval=settings.key_refresh_interval,
            )
            stop_flag = asyncio.Event()
            identity = settings.identity or f"{socket.gethostname()}-{random.getrandbits(32):08x}"
            tasks: list[asyncio.Task[Any]] = [
                asyncio.create_task(informer.run(), name="informer"),
                asyncio.create_task(key_watcher.run(), name="keys"),
                asyncio.create_task(trim_heap_periodically(), name="heap-trim"),
                asyncio.create_task(
                    run_kopf(kopf_registry, kopf_settings(settings), settings, identity, stop_flag),
                    name="kopf",
                ),
            ]
            op = Operator(settings, client, registry, store, reconciler, runner, tasks, stop_flag)
            try:
                yield op
            finally:
                stop_flag.set()
                await runner.cleanup()
                kopf_task = tasks[-1]
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(kopf_task, timeout=10)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await receiver_handlers.close()
                await reconciler.stop()
                await store.close()
    finally:
        await client.close()


class _NotKopfs(Collection["asyncio.Task[Any]"]):
    """The tasks kopf must leave alone when it stops: every task that isn't running kopf's code.

    On exit kopf cancels "hung" tasks — all tasks created after it started — meaning its handlers'.
    In a process that also runs a listener (and in tests, fixtures) that would cancel tasks kopf
    does not own, so it is told to ignore every task whose coroutine is not kopf's.
    """

    def __contains__(self, task: object) -> bool:
        code = getattr(getattr(task, "get_coro", lambda: None)(), "cr_code", None)
        return code is None or f"{os.sep}kopf{os.sep}" not in code.co_filename

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


async def run_kopf(
    registry: kopf.OperatorRegistry,
    config: kopf.OperatorSettings,
    settings: Settings,
    identity: str,
    stop_flag: asyncio.Event,
) -> None:
    tasks = await kopf.spawn_tasks(
        registry=registry,
        settings=config,
        clusterwide=True,
        standalone=False,
        peering_name=settings.peering_name,
        identity=identity,  # type: ignore[arg-type]
        stop_flag=stop_flag,
    )
    await kopf.run_tasks(tasks, ignored=_NotKopfs())


@contextlib.asynccontextmanager
async def default_cattle(settings: Settings) -> AsyncIterator[CattleEndpoint | None]:
    """The operator's default Cattle: none unless configured. A cluster may only scale workloads, and
    a forgotten CATTLE_URL must not send hits to an emulation ("sandbox" must be asked for)."""
    if not settings.cattle_url:
        yield None
        return
    async with cattle_endpoint(settings) as endpoint:
        yield endpoint


async def run_operator(settings: Settings) -> None:
    info = discover_connection()
    logger.info("Kubernetes API at %s; operator namespace %s", info.server, settings.namespace)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with operator(settings, info) as op:
        kopf_task = op.tasks[-1]
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({waiter, kopf_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if kopf_task in done and not stop.is_set():
            logger.error("the kopf operator stopped: %r", kopf_task.exception())
    logger.info("stopped")
