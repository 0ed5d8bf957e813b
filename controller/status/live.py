"""The status page in the running service: the view built from what the service holds, served at ``/``.

The running service knows more than its store: its receivers are the live ``ReceiverSet`` (a deleted
receiver is gone at once), and its ``Health`` says why a part is degraded (a failing ``cattle``
check is Cattle's problem; the other failing checks and the notes are the page's problems). A store
that keeps manifest problems (standalone SQLite) adds them.

The page is served next to ``/metrics`` (``controller.wiring`` mounts it): on the metrics port when
there is one, which a NetworkPolicy can keep from the senders on the internet, else on the
listener's. It answers GET and HEAD at ``/`` only.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aiohttp import web

from controller.drivers.contract import DriverSet
from controller.health import Health
from controller.model import Problem
from controller.receiver_set import ReceiverSet
from controller.status.page import render_page
from controller.status.view import ReceiverRef, StatusView, build_view
from controller.store.base import IntentStore

CATTLE_CHECK = "cattle"  # the Health check whose reason is Cattle's problem


@runtime_checkable
class ProblemStore(Protocol):
    async def list_problems(self) -> list[Problem]: ...


@dataclass(frozen=True)
class LiveStatus:
    receiver_set: ReceiverSet
    store: IntentStore
    drivers: DriverSet
    health: Health
    cattle_label: str
    clock: Callable[[], float] = field(default=time.time)

    async def view(self) -> StatusView:
        status = await self.store.read_status()
        failing = self.health.failing()
        notes = self.health.report()["notes"]
        problems = [f"{name}: {reason}" for name, reason in sorted(failing.items()) if name != CATTLE_CHECK]
        if isinstance(notes, dict):
            problems += [f"{name}: {reason}" for name, reason in sorted(notes.items())]
        if isinstance(self.store, ProblemStore):
            problems += [str(p) for p in await self.store.list_problems()]
        return build_view(
            receivers=[
                ReceiverRef(a.key, a.receiver.driver, a.receiver.target.id) for a in self.receiver_set
            ],
            status=status,
            drivers=self.drivers,
            problems=problems,
            cattle_label=self.cattle_label,
            cattle_problem=failing.get(CATTLE_CHECK),
            now=self.clock(),
        )


def status_page(live: LiveStatus) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def view(_: web.Request) -> web.Response:
        return web.Response(
            text=render_page(await live.view()),
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    return view
