"""``webhook-service run``: the receivers folder, a SQLite store and the key files, wired by
``controller.wiring``, running until SIGTERM/SIGINT.

The state folder's lock (``controller.statelock``) is taken before anything else touches the folder,
and the settings are logged only then, so a refused second ``run`` writes one line and nothing else.
A configured Cattle is checked at start (``controller.cattle.endpoint.watching_cattle``); its current
problem is kept in the store's meta under ``cattle_problem`` ("" when none) for ``status``.

What is this mode's own: the store and key ring in the state folder, the folder watcher and the
token sync it drives (``controller.receivers``), the folder the receivers API writes (watched with
the receivers folder), and ``--print-urls``. Start-up and shutdown order is
the wiring's (``controller.wiring``): the store opens and the receivers folder is loaded *before*
the listener accepts anything, so the first hit already sees every receiver; the reconciler then
picks up intents an earlier run left pending. Shutdown is the reverse: stop accepting, finish or
cancel the reconcile passes (what they recorded stays recorded), close the store.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from controller.cattle.endpoint import watching_cattle
from controller.drivers import load_drivers
from controller.metrics import Metrics
from controller.rancher.keys import load_public_key
from controller.receiver_set import ReceiverSet
from controller.receivers.api_store import ApiReceiverFolder
from controller.receivers.loader import load_standalone
from controller.receivers.sync import ReceiverSync
from controller.receivers.watcher import ReceiverWatcher
from controller.settings import Settings
from controller.statedir import secure_state_dir
from controller.statelock import lock_state_dir
from controller.store.base import CATTLE_PROBLEM_META
from controller.store.sqlite import SqliteStore
from controller.store.sqlite_schema import DB_NAME
from controller.tokens import KeyRing, TokenVerifier, trigger_url
from controller.wiring import WIRING, CleanupCtx, Wiring, cattle_label, running, stop_on_signals, wire

logger = logging.getLogger(__name__)


async def run_service(settings: Settings, *, print_urls: bool = False) -> None:
    lock = lock_state_dir(settings.state_dir)  # first: a second service must not write anything
    logger.info("settings: %s", ", ".join(f"{k}={v}" for k, v in settings.describe().items()))
    try:
        await serve_folder(settings, print_urls=print_urls)
    finally:
        lock.release()


async def serve_folder(settings: Settings, *, print_urls: bool) -> None:
    secure_state_dir(settings.state_dir)  # 0700, its files 0600, whatever an older run left
    stop = stop_on_signals()
    receiver_set = ReceiverSet()
    wiring = folder_service(settings, receiver_set)
    try:
        async with wiring.serving():
            logger.info(
                "listening on %s:%d; trigger URLs start with %s",
                settings.listen_host,
                settings.listen_port,
                settings.base_url,
            )
            if print_urls:
                print_trigger_urls(settings, receiver_set, cattle_label(wiring.cattle))
            await stop.wait()
            logger.info("shutting down")
    finally:
        logger.info("stopped")


def folder_service(settings: Settings, receiver_set: ReceiverSet) -> Wiring:
    """The wiring with this mode's parts: the state folder's store and keys, the receivers folder."""
    metrics = Metrics()
    keyring = KeyRing.load_or_create(settings.state_dir / "keys")
    store = SqliteStore(settings.state_dir / DB_NAME, retention=settings.hit_retention_days * 86400)
    drivers = load_drivers()
    sync = ReceiverSync(store=store, keyring=keyring, receiver_set=receiver_set, metrics=metrics)
    watcher = ReceiverWatcher(
        directory=settings.receivers_dir,
        also=[settings.api_receivers_path],
        drivers=drivers,
        sync=sync,
        store=store,
        metrics=metrics,
        interval=settings.watch_interval,
        loader=load_standalone,
    )
    wiring = wire(
        settings,
        store=store,
        receiver_set=receiver_set,
        verifier=TokenVerifier(
            keyring,
            cache_size=settings.token_cache_size,
            rancher_public_key=load_public_key(settings.rancher_public_key),
        ),
        drivers=drivers,
        metrics=metrics,
        startup=[noting_start(store, settings), following(watcher)],
        api_receivers=ApiReceiverFolder(
            settings.api_receivers_path,
            rescan=watcher.scan_once,
            receiver_set=receiver_set,
            base_url=settings.base_url,
        ),
    )
    wiring.health.add_note("manifests", watcher.problems_note)
    checking = watching_cattle(
        wiring.driver_ctx.cattle,
        wiring.cattle,
        wiring.health,
        interval=settings.resync_interval,
        note=lambda problem: store.set_meta(CATTLE_PROBLEM_META, problem),
    )
    if checking is not None:
        wiring.app.cleanup_ctx.append(checking)
    return wiring


def noting_start(store: SqliteStore, settings: Settings) -> CleanupCtx:
    """What ``status`` and ``trigger-url`` read of this run, and the store's durability in the log."""

    @contextlib.asynccontextmanager
    async def entry(app: web.Application) -> AsyncIterator[None]:
        await store.set_meta("public_url", settings.base_url)
        logger.info("store durability: %s", await store.pragmas())
        await store.set_meta("cattle", cattle_label(app[WIRING].cattle))
        await store.set_meta(CATTLE_PROBLEM_META, "")  # not an earlier run's: this run's check writes its own
        yield

    return entry


def following(watcher: ReceiverWatcher) -> CleanupCtx:
    """Load the receivers folder once, then follow its changes until shutdown."""

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        await watcher.scan_once()
        async with running(watcher.run(), "watcher"):
            yield

    return entry


def print_trigger_urls(settings: Settings, receiver_set: ReceiverSet, cattle: str) -> None:
    """For ``make run``: the URLs go to stdout for the person at the terminal, never into the logs."""
    print(f"Cattle: {cattle}", flush=True)
    actives = sorted(receiver_set, key=lambda a: a.key)
    if not actives:
        print(f"No receivers in {settings.receivers_dir} yet.", flush=True)
        return
    print("Trigger URLs (try them with curl):", flush=True)
    for active in actives:
        url = trigger_url(settings.base_url, active.token, active.receiver.target.project_id)
        print(f"  {active.key}  ({active.receiver.driver} {active.receiver.target.key})", flush=True)
        print(f"    curl -X POST '{url}'", flush=True)
    print(f"Then: {command_as_typed()} status --state {settings.state_dir}", flush=True)


def command_as_typed(argv0: str | None = None, cwd: Path | None = None) -> str:
    """How to run this program again from the current folder: the script's path relative to it when
    the script lies under it (``make run`` starts ``.venv/bin/webhook-service`` from the repository
    root, where that folder is not on PATH), its bare name when PATH finds that same script, else its
    absolute path."""
    script = Path(sys.argv[0] if argv0 is None else argv0)
    here = Path.cwd() if cwd is None else cwd
    absolute = script if script.is_absolute() else here / script
    if absolute.is_relative_to(here):
        relative = absolute.relative_to(here)
        return str(relative) if len(relative.parts) > 1 else f"./{relative}"
    found = shutil.which(absolute.name)
    if found is not None and Path(found) == absolute:
        return absolute.name
    return str(absolute)
