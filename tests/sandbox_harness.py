"""The sandbox over HTTP in tests: an aiohttp test client on a fresh sandbox app, a clock the test
moves, and a small JSON helper. The ``clock`` and ``make_client`` fixtures (tests/conftest.py) build
on it; ``make_client`` uses the requesting module's ``seed`` fixture."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from controller.sandbox.app import SandboxOptions, make_sandbox_app
from controller.sandbox.seed import SandboxSeed
from tests.toolbox import FakeClock

START = 1_700_000_000.0
Client = TestClient[web.Request, web.Application]
MakeClient = Callable[..., Awaitable[Client]]


def client_factory(
    aiohttp_client: AiohttpClient, seed: SandboxSeed, clock: FakeClock, **defaults: Any
) -> MakeClient:
    """``make(**options)``: a test client on a sandbox with these ``SandboxOptions`` (over ``defaults``)."""

    async def make(**options: Any) -> Client:
        app = make_sandbox_app(seed, SandboxOptions(**{**defaults, **options}), clock=clock)
        return await aiohttp_client(app)

    return make


async def json_of(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with client.request(method, path, **kwargs) as response:
        return response.status, await response.json()
