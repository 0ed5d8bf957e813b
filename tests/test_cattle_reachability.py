"""Whether the configured Cattle can be used: the start-up probe, the client's own outcomes, the
``cattle`` readiness check and what is kept for ``status``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpServer

from controller.cattle.client import CattleClient
from controller.cattle.endpoint import CattleEndpoint, watch_cattle, watching_cattle
from controller.cattle.errors import CattleBusy, CattleNotFound, CattleUnauthorized, CattleUnavailable
from controller.cattle.reachability import NOT_YET, CattleReachability
from controller.health import Health
from controller.sandbox.app import SandboxOptions, make_sandbox_app

KEYS = SandboxOptions(access_key="AK", secret_key="SK")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def cattle(aiohttp_server: AiohttpServer) -> TestServer:
    return await aiohttp_server(make_sandbox_app(None, KEYS))


def client_of(session: aiohttp.ClientSession, server: TestServer, secret: str = "SK") -> CattleClient:
    return CattleClient(
        session, base_url=str(server.make_url("/v2-beta")), access_key="AK", secret_key=secret
    )


class Stop(Exception):
    """Ends ``watch_cattle``'s loop after a given number of rounds."""


def rounds(count: int) -> tuple[list[float], Callable[[float], Awaitable[None]]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= count:
            raise Stop

    return slept, sleep


def test_nothing_is_known_before_the_first_request() -> None:
    assert CattleReachability().check() == NOT_YET


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (CattleUnavailable("GET /v2-beta/projects: ClientConnectorError: refused"), "unreachable: GET"),
        (
            CattleUnauthorized("GET /v2-beta/projects: 401 Unauthorized", status=401),
            "credentials refused: GET",
        ),
    ],
)
def test_no_answer_or_refused_credentials_make_cattle_unusable(error: Exception, reason: str) -> None:
    reachability = CattleReachability()
    assert isinstance(error, CattleUnavailable | CattleUnauthorized)
    reachability.failed(error)
    assert (reachability.check() or "").startswith(reason)


@pytest.mark.parametrize("error", [CattleNotFound("404", status=404), CattleBusy("409", status=409)])
def test_an_answer_about_one_resource_shows_cattle_usable(error: CattleNotFound | CattleBusy) -> None:
    reachability = CattleReachability()
    reachability.failed(CattleUnavailable("down"))
    reachability.failed(error)
    assert reachability.check() is None


async def test_the_probe_passes_with_the_right_keys(
    session: aiohttp.ClientSession, cattle: TestServer
) -> None:
    client = client_of(session, cattle)
    await client.check_access()
    assert client.reachability.check() is None


async def test_the_probe_with_wrong_keys_says_the_credentials_are_refused(
    session: aiohttp.ClientSession, cattle: TestServer
) -> None:
    client = client_of(session, cattle, secret="wrong")
    with pytest.raises(CattleUnauthorized):
        await client.check_access()
    assert (client.reachability.check() or "").startswith("credentials refused: GET /v2-beta/projects: 401")


async def test_an_unreachable_cattle_is_logged_as_an_error_and_noted(
    session: aiohttp.ClientSession, cattle: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = str(cattle.make_url("/v2-beta"))
    await cattle.close()
    client = CattleClient(session, base_url=url, access_key="AK", secret_key="SK", timeout=2)
    notes: list[str] = []

    async def note(problem: str) -> None:
        notes.append(problem)

    slept, sleep = rounds(2)
    with caplog.at_level(logging.ERROR), pytest.raises(Stop):
        await watch_cattle(client, "http://rancher", interval=5.0, note=note, sleep=sleep)
    assert slept == [5.0, 5.0]
    assert len(notes) == 1 and notes[0].startswith("unreachable: GET /v2-beta/projects")
    [record] = caplog.records
    assert record.getMessage().startswith("Cattle at http://rancher cannot be used: unreachable: GET")


async def test_a_usable_cattle_is_probed_once_and_noted_fine(
    session: aiohttp.ClientSession, cattle: TestServer
) -> None:
    client = client_of(session, cattle)
    notes: list[str] = []

    async def note(problem: str) -> None:
        notes.append(problem)

    _, sleep = rounds(3)
    with pytest.raises(Stop):
        await watch_cattle(client, "x", interval=1.0, note=note, sleep=sleep)
    assert notes == [""]


async def test_a_recovery_seen_by_any_request_clears_the_note(
    session: aiohttp.ClientSession, cattle: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_of(session, cattle, secret="wrong")
    notes: list[str] = []

    async def note(problem: str) -> None:
        notes.append(problem)

    async def sleep(_seconds: float) -> None:
        if len(notes) == 1:
            client.reachability.succeeded()  # what a reconcile pass that got through reports
        else:
            raise Stop

    with caplog.at_level(logging.INFO, logger="controller.cattle.endpoint"), pytest.raises(Stop):
        await watch_cattle(client, "x", interval=1.0, note=note, sleep=sleep)
    assert [bool(n) for n in notes] == [True, False]
    assert caplog.records[-1].getMessage() == "Cattle at x is reachable again"


def test_the_readiness_check_is_registered_only_for_a_configured_cattle(
    session: aiohttp.ClientSession,
) -> None:
    client = CattleClient(session, base_url="http://rancher/v2-beta", access_key=None, secret_key=None)
    health = Health()
    sandbox = CattleEndpoint("http://127.0.0.1:1/v2-beta", None, None, label="SANDBOX", embedded=True)
    assert watching_cattle(client, sandbox, health, interval=1.0) is None
    assert watching_cattle(None, None, health, interval=1.0) is None
    assert health.failing() == {}
    rancher = CattleEndpoint("http://rancher/v2-beta", None, None, label="http://rancher/v2-beta")
    assert watching_cattle(client, rancher, health, interval=1.0) is not None
    assert health.failing() == {"cattle": NOT_YET}
