"""The one wiring both modes serve: what starts before the listener accepts, and what stops after it.

Each test wires a real SQLite store in tmp_path and serves the app on a loopback port, as ``run``
and ``operator`` do; a mode's start-up entry stands in for its receivers' source and notes what it
sees.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from controller.drivers import load_drivers
from controller.metrics import Metrics
from controller.receiver_set import ReceiverSet
from controller.settings import SANDBOX, Settings
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier
from controller.wiring import CleanupCtx, Wiring, wire
from tests.processes import free_port


class NotedStore(SqliteStore):
    """The real store, noting when it opens and closes."""

    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.events = events

    async def open(self) -> None:
        await super().open()
        self.events.append("store opened")

    async def close(self) -> None:
        if self.is_open():
            self.events.append("store closing")
        await super().close()


def noting(store: SqliteStore, events: list[str], *, fail: bool = False) -> CleanupCtx:
    """A mode's start-up entry: notes whether the store is open when it starts and when it stops."""

    @contextlib.asynccontextmanager
    async def entry(_app: web.Application) -> AsyncIterator[None]:
        events.append(f"startup (store open: {store.is_open()})")
        if fail:
            raise RuntimeError("the receivers cannot be loaded")
        yield
        events.append(f"startup stops (store open: {store.is_open()})")

    return entry


def wired(tmp_path: Path, store: SqliteStore, *startup: CleanupCtx, cattle_url: str = "") -> Wiring:
    settings = Settings(state_dir=tmp_path, listen_host="127.0.0.1", listen_port=0, cattle_url=cattle_url)
    return wire(
        settings,
        store=store,
        receiver_set=ReceiverSet(),
        verifier=TokenVerifier(KeyRing.load_or_create(tmp_path / "keys")),
        drivers=load_drivers(),
        metrics=Metrics(),
        startup=startup,
    )


async def test_the_store_opens_and_the_mode_starts_before_the_listener_accepts(tmp_path: Path) -> None:
    events: list[str] = []
    store = NotedStore(tmp_path / "state.db", events)
    wiring = wired(tmp_path, store, noting(store, events))
    async with wiring.serving():
        events.append("accepting")
    assert events[:3] == ["store opened", "startup (store open: True)", "accepting"]


async def test_shutdown_stops_the_mode_before_the_store_closes(tmp_path: Path) -> None:
    events: list[str] = []
    store = NotedStore(tmp_path / "state.db", events)
    wiring = wired(tmp_path, store, noting(store, events))
    async with wiring.serving():
        pass
    assert events[-2:] == ["startup stops (store open: True)", "store closing"]
    assert not store.is_open()


async def test_a_start_up_that_fails_closes_what_it_opened(tmp_path: Path) -> None:
    events: list[str] = []
    store = NotedStore(tmp_path / "state.db", events)
    wiring = wired(tmp_path, store, noting(store, events, fail=True))
    with pytest.raises(RuntimeError, match="cannot be loaded"):
        async with wiring.serving():
            pytest.fail("the listener accepted although its start-up failed")
    assert events == ["store opened", "startup (store open: True)", "store closing"]


async def test_without_a_cattle_url_there_is_no_default_cattle(tmp_path: Path) -> None:
    wiring = wired(tmp_path, SqliteStore(tmp_path / "state.db"))
    async with wiring.serving():
        assert (wiring.cattle, wiring.driver_ctx.cattle) == (None, None)


async def test_the_embedded_sandbox_answers_while_the_app_runs_and_stops_with_it(tmp_path: Path) -> None:
    wiring = wired(tmp_path, SqliteStore(tmp_path / "state.db"), cattle_url=SANDBOX)
    assert wiring.cattle is not None and wiring.cattle.label.startswith("SANDBOX")
    cattle = wiring.driver_ctx.cattle
    assert cattle is not None and cattle.base_url == wiring.cattle.url
    async with wiring.serving():
        assert (await cattle.get_project("1a5"))["id"] == "1a5"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(wiring.cattle.url)


async def test_metrics_listen_serves_metrics_apart_from_the_trigger_endpoint(tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        state_dir=tmp_path, listen_host="127.0.0.1", listen_port=0, cattle_url="", metrics_host="127.0.0.1",
        metrics_port=port,
    )  # fmt: skip
    wiring = wire(
        settings,
        store=SqliteStore(tmp_path / "state.db"),
        receiver_set=ReceiverSet(),
        verifier=TokenVerifier(KeyRing.load_or_create(tmp_path / "keys")),
        drivers=load_drivers(),
        metrics=Metrics(),
    )
    async with wiring.serving() as runner, aiohttp.ClientSession() as session:
        listener = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with session.get(f"{listener}/metrics") as answer:
            assert answer.status == 404  # not on the port senders reach
        async with session.get(f"http://127.0.0.1:{port}/metrics") as answer:
            assert answer.status == 200 and "webhook_hits_total" in await answer.text()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(f"http://127.0.0.1:{port}/metrics")  # stopped with the app
