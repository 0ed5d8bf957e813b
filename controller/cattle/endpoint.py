"""Which Cattle API the service talks to by default, and the client for it: the same for both modes.

Three cases, all decided by ``settings.cattle_url``: none (empty: only receivers that name their own
credentials can reach Cattle), a configured Rancher, or ``sandbox``, the emulation embedded in the
process on a loopback port.

The embedded sandbox reserves its port when it is made (``EmbeddedSandbox.reserve``) and serves from
``serving`` on: its URL is thus known while the Cattle client, the driver context and the reconciler
are built, before anything runs, and its lifetime can be an entry of the service's ``cleanup_ctx``
like every other resource (``controller.wiring``).

A configured Cattle is checked once at start (``watching_cattle``): one cheap authenticated read, whose
failure — no answer, credentials refused — is an ERROR line and a failing ``/readyz`` check named
``cattle``. From then on the state is whatever the client's own requests last said (the reconciler's
passes, the drivers' reads: ``CattleReachability``), so a recovery seen by a pass clears the check at
once. While the state is bad the probe is repeated every resync interval: an idle service sends
Cattle nothing else, and its check would otherwise stay failing until the next hit. While the state
is good nothing is sent. The sandbox is never checked: it is part of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web

from controller.cattle.client import CattleClient
from controller.cattle.errors import CattleError
from controller.health import Health
from controller.metrics import Metrics
from controller.redact import mask_url
from controller.sandbox.app import SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed, load_seed
from controller.settings import Settings

logger = logging.getLogger(__name__)

Note = Callable[[str], Awaitable[None]]  # keeps the current problem ("" when none) where status reads it
Sleep = Callable[[float], Awaitable[None]]

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class CattleEndpoint:
    url: str
    access_key: str | None
    secret_key: str | None
    label: str  # what ``status`` and ``make run`` show: the URL, or that it is the SANDBOX
    embedded: bool = False  # the sandbox in this process: nothing to check


def configured_endpoint(settings: Settings) -> CattleEndpoint | None:
    """The Cattle API ``settings.cattle_url`` names; None when it names none (the sandbox is not one)."""
    if not settings.cattle_url or settings.uses_sandbox:
        return None
    url = settings.cattle_url.rstrip("/")
    # The URL may carry the API keys (http://ACCESS:SECRET@host/v2-beta): the label never does.
    return CattleEndpoint(url, settings.cattle_access_key, settings.cattle_secret_key, label=mask_url(url))


class EmbeddedSandbox:
    """The sandbox on a loopback port bound now, serving between entering and leaving ``serving``."""

    def __init__(self, seed: SandboxSeed | None, sock: socket.socket) -> None:
        self._seed = seed
        self._socket = sock
        url = f"http://{LOOPBACK}:{sock.getsockname()[1]}/v2-beta"
        self.endpoint = CattleEndpoint(
            url, None, None, label=f"SANDBOX (emulated in-process at {url}, not Rancher)", embedded=True
        )

    @classmethod
    def reserve(cls, seed_path: Path | None) -> EmbeddedSandbox:
        """Read the seed (None: the default world), then bind the port: a bad seed leaves nothing open."""
        seed = load_seed(seed_path) if seed_path else None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((LOOPBACK, 0))
        return cls(seed, sock)

    @contextlib.asynccontextmanager
    async def serving(self, _app: web.Application | None = None) -> AsyncIterator[None]:
        """Serve on the reserved port until exit (a ``cleanup_ctx`` entry, hence the app argument)."""
        runner = web.AppRunner(make_sandbox_app(self._seed, SandboxOptions()))
        try:
            await runner.setup()
            await web.SockSite(runner, self._socket).start()
            logger.warning("SANDBOX: Cattle is emulated in-process at %s, not Rancher", self.endpoint.url)
            yield
        finally:
            await runner.cleanup()
            self._socket.close()


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


def watching_cattle(
    client: CattleClient | None,
    endpoint: CattleEndpoint | None,
    health: Health,
    *,
    interval: float,
    note: Note | None = None,
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]] | None:
    """Register the ``cattle`` readiness check and return the ``cleanup_ctx`` entry that probes Cattle
    at start (and again while it fails); None when there is no configured Cattle to check."""
    if client is None or endpoint is None or endpoint.embedded:
        return None
    health.add("cattle", client.reachability.check)

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch_cattle(client, endpoint.label, interval=interval, note=note))
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    return entry


async def watch_cattle(
    client: CattleClient,
    label: str,
    *,
    interval: float,
    note: Note | None = None,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """Probe while Cattle can't be used; log each change of state and hand it to ``note``. Runs until
    cancelled."""
    reachability = client.reachability
    noted: str | None = None
    first = True
    while True:
        if reachability.problem is not None:
            with contextlib.suppress(CattleError):  # the reason is in ``reachability``
                await client.check_access()
        problem = reachability.problem
        if first or problem != noted:
            if problem is not None:
                logger.error("Cattle at %s cannot be used: %s", label, problem)
            elif not first:
                logger.info("Cattle at %s is reachable again", label)
            if note is not None:
                await note(problem or "")
            first, noted = False, problem
        await sleep(interval)
