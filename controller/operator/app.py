"""``webhook-service operator``: kopf, the informer and the listener in one process.

What runs, and where:

- in every replica: the listener (hits are recorded in IntentLedgers with compare-and-swap, so any
  replica may accept them) with the receivers API (``controller.operator.api_receivers``: Receiver
  objects in each project's labelled namespace), the Receiver informer that feeds the listener's
  receiver set, and the key watcher;
- in the active replica only (kopf peering: each replica takes a random priority, so exactly one is
  highest and the others pause): the kopf handlers — tokens, Secrets, status, Events;
- in the leader only (the holder of a Lease, ``controller.operator.leader``): the reconciler, which
  folds intents and applies them. kopf's peering cannot guard it: it pauses handlers, not the tasks
  they started, and notices a dead peer only after a minute. The leader watches the ledgers and wakes
  its reconciler for each one with work; wakes reach every replica's reconciler (kopf's handlers
  send them too), but one that does not lead ignores them. The leader's reconciler resyncs when its
  term starts and periodically, and it is paused (its workers cancelled) as soon as the Lease is lost.

Credentials are found the way kubectl and kopf find them: in-cluster service account first, then
``KUBECONFIG`` or ``~/.kube/config``. The same ``ConnectionInfo`` serves kopf (through a login
handler on this operator's own registry) and our client, so both talk to the same API as the same
user.

The listener, the reconciler, the driver context and their resources are wired as in ``run``
(``controller.wiring``), with the IntentLedger store and the Kubernetes client; what is this mode's
own is added to the same app's ``cleanup_ctx``: the informer loads every Receiver before the listener
accepts (and, should it lose track of them later, makes ``/readyz`` fail until it has listed them
again), and kopf starts after everything else and stops first, so no handler wakes a reconciler
that has stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web

from controller.backoff import Backoff
from controller.cattle.endpoint import watching_cattle
from controller.drivers import load_drivers
from controller.kube.client import LEDGERS, KubeClient
from controller.kube.errors import KubeError
from controller.metrics import Metrics
from controller.operator import handlers
from controller.operator.api_receivers import KubeApiReceivers
from controller.operator.informer import ReceiverInformer
from controller.operator.keys import KeyWatcher, load_or_create_keyring
from controller.operator.leader import LeaderElector, LeaseTimings
from controller.operator.peering import PeeringCheck
from controller.operator.receiver_status import post_event
from controller.operator.status_mirror import StatusMirror
from controller.rancher.keys import load_public_key
from controller.receiver_set import ReceiverSet
from controller.receivers.schema import ReceiverSchema
from controller.reconciler import Reconciler
from controller.settings import Settings
from controller.store import ledger as ledgers
from controller.store.base import HitRequest
from controller.store.kube import KubeStore
from controller.tokens import TokenVerifier
from controller.wiring import CleanupCtx, background, running, stop_on_signals, wire

logger = logging.getLogger(__name__)

KOPF_STOP_TIMEOUT = 10.0  # seconds kopf gets to stop gracefully before it is cancelled


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
    # No handler needs a finalizer any more; naming the one earlier versions added lets kopf remove it.
    config.persistence.finalizer = "webhook-service.dev/revoke-token"
    config.posting.level = logging.WARNING  # our handlers post their own Events
    config.watching.server_timeout = 300
    # A watch the API server (or a load balancer) leaves hanging is dropped and reopened, not waited on
    # forever: the client gives up a little after the server should have ended it.
    config.watching.client_timeout = 330
    config.watching.connect_timeout = 10
    config.networking.connect_timeout = 10
    config.networking.request_timeout = 60
    # The handled resources are fixed; without scanning, kopf needs no list/watch on CRDs (least privilege).
    config.scanning.disabled = True
    return config


@dataclass
class Operator:
    """One operator instance's parts, for ``run_operator`` and for tests that drive it in-process."""

    settings: Settings
    client: KubeClient
    receiver_set: ReceiverSet
    store: KubeStore
    reconciler: Reconciler
    listener: web.AppRunner
    kopf_run: KopfRun
    elector: LeaderElector

    @property
    def port(self) -> int:
        host_port = self.listener.addresses[0]  # (host, port) of the first socket listened on
        return int(host_port[1])


@contextlib.asynccontextmanager
async def operator(settings: Settings, info: kopf.ConnectionInfo) -> AsyncIterator[Operator]:
    """Start everything; stop it all (kopf gracefully) on exit."""
    metrics = Metrics()
    client = KubeClient.from_connection(info)
    try:
        keyring = await load_or_create_keyring(client, settings.namespace)
        verifier = TokenVerifier(
            keyring,
            cache_size=settings.token_cache_size,
            rancher_public_key=load_public_key(settings.rancher_public_key),
        )
        keys = handlers.KeyHolder(keyring)
        store = KubeStore(client, settings.namespace, on_full=functools.partial(backlog_full_event, client))
        drivers = load_drivers()
        schema = ReceiverSchema.load(drivers.values())
        receiver_set = ReceiverSet()
        informer = ReceiverInformer(
            client,
            receiver_set,
            drivers,
            schema,
            backoff=Backoff(base=settings.backoff_base, cap=settings.backoff_cap),
        )
        wiring = wire(
            settings,
            store=store,
            receiver_set=receiver_set,
            verifier=verifier,
            drivers=drivers,
            metrics=metrics,
            kube=client,
            # Hits only record; the leader learns of them from its watch on the ledgers, so a
            # listener never folds.
            wake=lambda _target: None,
            startup=[informing(informer)],
            api_receivers=KubeApiReceivers(client, receiver_set),
        )
        wiring.health.add("informer", informer.unready_reason)
        cattle = watching_cattle(
            wiring.driver_ctx.cattle, wiring.cattle, wiring.health, interval=settings.resync_interval
        )
        if cattle is not None:
            wiring.app.cleanup_ctx.append(cattle)
        if wiring.cattle is not None:
            logger.info("default Cattle: %s", wiring.cattle.label)
        else:
            logger.info("no default Cattle (CATTLE_URL unset): scaleService receivers need cattleSecretRef")

        kopf_registry = kopf.OperatorRegistry()
        kopf.on.login(registry=kopf_registry)(lambda **_: info)
        operator_deps = handlers.OperatorDeps(
            client=client,
            keys=keys,
            receiver_set=receiver_set,
            reconciler=wiring.reconciler,
            drivers=drivers,
            schema=schema,
            base_url=settings.base_url,
            namespace=settings.namespace,
        )
        receiver_handlers = handlers.register(kopf_registry, operator_deps)
        key_watcher = KeyWatcher(
            client,
            settings.namespace,
            verifier,
            lambda ring: setattr(keys, "keyring", ring),
            keyring,
            interval=settings.key_refresh_interval,
        )
        identity = settings.identity or f"{socket.gethostname()}-{random.getrandbits(32):08x}"
        kopf_config = kopf_settings(settings)
        kopf_run = KopfRun(kopf_registry, kopf_config, settings, identity, receiver_handlers)
        peering = PeeringCheck(
            client, settings.peering_name, identity=identity, priority=kopf_config.peering.priority
        )
        leadership = Leadership(wiring.reconciler, client, settings.namespace, receiver_handlers.mirror)
        elector = LeaderElector(
            client,
            settings.namespace,
            identity,
            timings=LeaseTimings.lasting(settings.leader_lease),
            on_started=leadership.started,
            on_stopped=leadership.stopped,
        )
        wiring.app.cleanup_ctx.append(leadership.electing(elector))
        wiring.app.cleanup_ctx.append(background("keys", key_watcher.run))
        wiring.app.cleanup_ctx.append(
            background(
                "resync", lambda: receiver_handlers.resyncing(settings.resync_interval, peering.active)
            )
        )
        wiring.app.cleanup_ctx.append(kopf_run.running)
        async with wiring.serving() as runner:
            logger.info("listening on %s:%d", settings.listen_host, settings.listen_port)
            yield Operator(
                settings, client, receiver_set, store, wiring.reconciler, runner, kopf_run, elector
            )
    finally:
        await client.close()


async def backlog_full_event(client: KubeClient, request: HitRequest, message: str) -> None:
    """A Warning Event on the Receiver whose hit its target's full ledger refused (once a minute per
    target, ``KubeStore``): ``kubectl describe rcv`` says why its sender gets 503."""
    namespace, _, name = request.receiver.partition("/")
    receiver = {"metadata": {"name": name, "namespace": namespace, "uid": request.receiver_uid}}
    await post_event(client, receiver, "Warning", "TargetBacklogFull", message)


def informing(informer: ReceiverInformer) -> CleanupCtx:
    """Follow the Receivers until shutdown; start-up goes on once they are listed (failures are retried)."""

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        async with running(informer.run(), "informer"):
            await informer.synced()
            yield

    return entry


class Leadership:
    """What only the leader runs: the reconciler's loop, and a watch on the ledgers (in the operator's
    namespace) that wakes it for a hit any replica recorded and mirrors each ledger into its receivers'
    status. The leader is the one replica that writes ledgers' folds, so it is also the one whose view
    of them is freshest; and a namespaced watch needs no cluster-wide permission on ledgers.
    """

    def __init__(
        self,
        reconciler: Reconciler,
        client: KubeClient,
        namespace: str,
        mirror: StatusMirror | None = None,
        *,
        retry_delay: float = 1.0,
    ) -> None:
        self._reconciler = reconciler
        self._mirror = mirror
        self._client = client
        self._namespace = namespace
        self._retry_delay = retry_delay
        self._tasks: list[asyncio.Task[None]] = []

    async def started(self) -> None:
        self._reconciler.resume()
        self._tasks = [
            asyncio.create_task(self._reconciler.run(), name="reconciler"),
            asyncio.create_task(self._follow_ledgers(), name="ledger watch"),
        ]

    async def stopped(self) -> None:
        await self._reconciler.pause()  # workers cancelled before anything else: they must not write
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _follow_ledgers(self) -> None:
        while True:
            try:
                async for event in self._client.watch(LEDGERS.within(self._namespace)):
                    obj = event.get("object") or {}
                    target = str((obj.get("spec") or {}).get("target") or "")
                    if not (event.get("type") in ("ADDED", "MODIFIED") and target):
                        continue
                    led = ledgers.from_json(obj.get("ledger"), target)
                    if ledgers.has_work(led):
                        self._reconciler.wake(target)
                    if self._mirror is not None:
                        self._mirror.ledger_changed(led)
            except KubeError as e:
                logger.warning("watching ledgers failed, retrying in %.0fs: %s", self._retry_delay, e)
            except Exception:
                # Anything else (a malformed object, say) must not end the leader's only wake-up source.
                logger.exception("watching ledgers failed, retrying in %.0fs", self._retry_delay)
            await asyncio.sleep(self._retry_delay)  # the server ended the watch, or it broke

    def electing(self, elector: LeaderElector) -> CleanupCtx:
        """A ``cleanup_ctx`` entry: no reconciling until elected; the term ends (and the Lease is
        released) on the way out."""

        @contextlib.asynccontextmanager
        async def entry(_app: web.Application) -> AsyncIterator[None]:
            await self._reconciler.pause()
            async with running(elector.run(), "leader election"):
                yield

        return entry


class KopfRun:
    """kopf in this process: started once everything else runs, stopped first and gracefully."""

    def __init__(
        self,
        registry: kopf.OperatorRegistry,
        config: kopf.OperatorSettings,
        settings: Settings,
        identity: str,
        receiver_handlers: handlers.ReceiverHandlers,
    ) -> None:
        self._registry = registry
        self._config = config
        self._settings = settings
        self._identity = identity
        self._handlers = receiver_handlers
        self.stop_flag = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def running(self, _app: web.Application) -> AsyncIterator[None]:
        """A ``cleanup_ctx`` entry: kopf's task from start-up on; on the way out, kopf stops first."""
        run = run_kopf(self._registry, self._config, self._settings, self._identity, self.stop_flag)
        try:
            async with running(run, "kopf") as task:
                self.task = task
                try:
                    yield
                finally:
                    self.stop_flag.set()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await asyncio.wait_for(task, timeout=KOPF_STOP_TIMEOUT)
        finally:
            await self._handlers.close()


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


async def run_operator(settings: Settings) -> None:
    info = discover_connection()
    logger.info("Kubernetes API at %s; operator namespace %s", info.server, settings.namespace)
    stop = stop_on_signals()
    async with operator(settings, info) as op:
        kopf_task = op.kopf_run.task
        assert kopf_task is not None  # started with the listener
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({waiter, kopf_task}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if kopf_task in done and not stop.is_set():
            logger.error("the kopf operator stopped: %r", kopf_task.exception())
    logger.info("stopped")
