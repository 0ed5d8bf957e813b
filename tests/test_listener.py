"""The trigger endpoint and the listener's other routes, end to end through aiohttp.

One fixture builds everything real — a key ring and a SQLite store in tmp_path, the scaleService
driver, a receiver_set holding one receiver and its token — and a fake clock, so time-based behaviour
(rate limits, cooldown) is driven without sleeping.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, make_mocked_request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.drivers import load_drivers
from controller.drivers.contract import DriverSet
from controller.listener import TRIGGER_PATH, RedactingAccessLogger
from controller.listener.accesslog import REDACTED
from controller.listener.app import HIT_SUMMARY
from controller.metrics import Metrics
from controller.model import ActiveReceiver, RateLimit, Receiver
from controller.receiver_set import ReceiverSet
from controller.settings import Settings
from controller.store.base import HitRequest, HitResult, LedgerFull
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier, mint_token
from controller.wiring import wire
from tests import rancher_objects
from tests.specs import receiver_spec
from tests.toolbox import FakeClock

FIXTURES = Path(__file__).parent / "fixtures"
MAX_BODY = 4096
SPEC = receiver_spec(
    "scaleService",
    {
        "projectId": "1a5",
        "serviceId": "1s7",
        "action": "up",
        "amount": 1,
        "min": 1,
        "max": 10,
    },
)

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


class OrderedStore(SqliteStore):
    """The real store, noting when a hit became durable so tests can order it against wake()."""

    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.events = events

    async def record_hit(self, request: HitRequest) -> HitResult:
        result = await super().record_hit(request)
        self.events.append(f"recorded {result.hit_id}")
        return result


@dataclasses.dataclass
class Harness:
    client: TestClient[web.Request, web.Application]
    receiver_set: ReceiverSet
    store: OrderedStore
    keyring: KeyRing
    metrics: Metrics
    clock: FakeClock
    events: list[str]
    active: ActiveReceiver
    drivers: DriverSet

    @property
    def token(self) -> str:
        return self.active.token

    @property
    def target_id(self) -> str:
        return self.active.receiver.target.id

    def update(self, **changes: Any) -> None:
        """Change the receiver's settings; its token stays the current one."""
        receiver = dataclasses.replace(self.active.receiver, **changes)
        self.active = dataclasses.replace(self.active, receiver=receiver)
        self.receiver_set.put(self.active)

    def reissue(self, jti: str) -> None:
        token, kid = mint_token(
            self.keyring, receiver=self.active.receiver, uid=self.active.uid, jti=jti, now=self.clock()
        )
        self.active = dataclasses.replace(self.active, jti=jti, token=token, kid=kid)
        self.receiver_set.put(self.active)

    async def hit(
        self,
        *,
        token: str | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
    ) -> ClientResponse:
        params = {"key": token or self.token, "projectId": "1a5"} if query is None else query
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        return await self.client.post(TRIGGER_PATH, params=params, headers=headers, data=body)


@pytest.fixture
async def harness(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Harness]:
    clock = FakeClock()
    events: list[str] = []
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    drivers = load_drivers()
    driver = drivers["scaleService"]
    receiver = Receiver(
        namespace="default",
        name="scale-up",
        driver="scaleService",
        spec=SPEC,
        target=driver.target(SPEC, "default"),
    )
    token, kid = mint_token(keyring, receiver=receiver, uid="uid-1", jti="jti-1", now=clock())
    active = ActiveReceiver(receiver=receiver, uid="uid-1", jti="jti-1", token=token, kid=kid)
    receiver_set = ReceiverSet()
    receiver_set.put(active)
    receiver_set.loaded = True
    store = OrderedStore(tmp_path / "state.db", events)
    metrics = Metrics()
    wiring = wire(
        Settings(state_dir=tmp_path, max_body_bytes=MAX_BODY, cattle_url=""),
        store=store,
        receiver_set=receiver_set,
        verifier=TokenVerifier(keyring),
        drivers=drivers,
        metrics=metrics,
        wake=lambda target_id: events.append(f"wake {target_id}"),
        clock=clock,
    )
    client = await aiohttp_client(wiring.app)  # starts the app: the store opens, and closes after the test
    yield Harness(client, receiver_set, store, keyring, metrics, clock, events, active, drivers)


def fixture_body(name: str) -> Any:
    return json.loads((FIXTURES / f"alertmanager-0.25-{name}.json").read_text())


async def answer(response: ClientResponse) -> dict[str, Any]:
    data: dict[str, Any] = await response.json()
    return data


async def assert_error(response: ClientResponse, status: int, code: str) -> None:
    data = await answer(response)
    assert (response.status, data["type"], data["status"], data["code"]) == (status, "error", status, code)
    assert data["message"]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- where the token is


async def test_a_token_in_key_is_accepted(harness: Harness) -> None:
    response = await harness.hit()
    assert (response.status, (await answer(response))["outcome"]) == (200, "accepted")


async def test_a_token_in_the_legacy_token_parameter_is_accepted(harness: Harness) -> None:
    response = await harness.hit(query={"token": harness.token})
    assert (response.status, (await answer(response))["outcome"]) == (200, "accepted")


async def test_a_bearer_token_is_accepted(harness: Harness) -> None:
    response = await harness.hit(query={}, headers={"Authorization": f"Bearer {harness.token}"})
    assert (response.status, (await answer(response))["outcome"]) == (200, "accepted")


async def test_no_token_is_401_token_missing(harness: Harness) -> None:
    await assert_error(await harness.hit(query={"projectId": "1a5"}), 401, "token_missing")


async def test_the_same_token_in_header_and_query_is_accepted(harness: Harness) -> None:
    response = await harness.hit(headers={"Authorization": f"Bearer {harness.token}"})
    assert response.status == 200


async def test_a_basic_authorization_header_is_not_taken_for_a_token(harness: Harness) -> None:
    response = await harness.hit(headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status == 200


async def test_two_different_tokens_are_400_ambiguous_token(harness: Harness) -> None:
    response = await harness.hit(headers={"Authorization": "Bearer something-else"})
    await assert_error(response, 400, "ambiguous_token")


async def test_a_repeated_query_key_is_400_malformed_query(harness: Harness) -> None:
    response = await harness.client.post(f"{TRIGGER_PATH}?key={harness.token}&key={harness.token}")
    await assert_error(response, 400, "malformed_query")


# -- whether the token grants anything


async def test_a_garbage_token_is_401_token_malformed(harness: Harness) -> None:
    await assert_error(await harness.hit(token="not-a-jwt"), 401, "token_malformed")


async def test_an_alg_none_token_is_401_bad_algorithm(harness: Harness) -> None:
    payload = harness.token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': harness.active.kid})}.{b64(claims)}."
    await assert_error(await harness.hit(token=forged), 401, "bad_algorithm")


async def test_a_tampered_token_is_401_bad_signature(harness: Harness) -> None:
    header, _, signature = harness.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(harness.token.split(".")[1] + "=="))
    forged = f"{header}.{b64({**claims, 'name': 'other'})}.{signature}"
    await assert_error(await harness.hit(token=forged), 401, "bad_signature")


async def test_a_removed_receivers_token_is_403_token_revoked(harness: Harness) -> None:
    harness.receiver_set.remove(harness.active.key)
    await assert_error(await harness.hit(), 403, "token_revoked")


async def test_a_reissued_receivers_old_token_is_403_token_superseded(harness: Harness) -> None:
    old = harness.token
    harness.reissue("jti-2")
    await assert_error(await harness.hit(token=old), 403, "token_superseded")


async def test_another_project_in_the_url_is_403_project_mismatch(harness: Harness) -> None:
    response = await harness.hit(query={"key": harness.token, "projectId": "1a9"})
    await assert_error(response, 403, "project_mismatch")


async def test_a_rejected_token_is_logged_without_the_token(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.receiver_set.remove(harness.active.key)
    with caplog.at_level(logging.WARNING, logger="controller.listener"):
        await harness.hit()
    assert "token_revoked" in caplog.text and harness.token not in caplog.text


# -- Rancher's URL of an imported receiver: ?key=<Rancher key>&projectId=

RANCHER_KEY = rancher_objects.SCALE_SERVICE_KEY


def import_from_rancher(harness: Harness) -> None:
    harness.update(rancher_key_sha256=hashlib.sha256(RANCHER_KEY.encode()).hexdigest())


async def test_a_rancher_key_hits_its_imported_receiver(harness: Harness) -> None:
    import_from_rancher(harness)
    data = await answer(await harness.hit(token=RANCHER_KEY))
    assert (data["receiver"], data["outcome"]) == ("default/scale-up", "accepted")


async def test_a_rancher_key_of_a_receiver_not_imported_is_401_token_malformed(harness: Harness) -> None:
    await assert_error(await harness.hit(token=RANCHER_KEY), 401, "token_malformed")


async def test_a_rancher_key_with_another_project_is_403_project_mismatch(harness: Harness) -> None:
    import_from_rancher(harness)
    response = await harness.hit(query={"key": RANCHER_KEY, "projectId": "1a9"})
    await assert_error(response, 403, "project_mismatch")


async def test_a_rancher_key_stops_when_its_receiver_is_removed(harness: Harness) -> None:
    import_from_rancher(harness)
    harness.receiver_set.remove(harness.active.key)
    await assert_error(await harness.hit(token=RANCHER_KEY), 401, "token_malformed")


async def test_a_rancher_key_stops_at_a_new_token_generation(harness: Harness) -> None:
    import_from_rancher(harness)
    harness.update(token_generation="2")
    await assert_error(await harness.hit(token=RANCHER_KEY), 403, "token_superseded")
    assert (await harness.hit()).status == 200  # the receiver's own URL still works


async def test_a_rancher_key_counts_against_the_receivers_rate_limit(harness: Harness) -> None:
    import_from_rancher(harness)
    harness.update(rate_limit=RateLimit(requests=1, per_seconds=60))
    assert (await harness.hit()).status == 200
    await assert_error(await harness.hit(token=RANCHER_KEY), 429, "rate_limited")


async def test_a_legacy_rancher_token_is_401_without_cattles_public_key(harness: Harness) -> None:
    import_from_rancher(harness)
    token = rancher_objects.legacy_token(rancher_objects.cattle_key(), rancher_objects.SCALE_SERVICE)
    await assert_error(await harness.hit(query={"token": token}), 401, "bad_algorithm")


async def test_a_rancher_key_is_never_logged(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    import_from_rancher(harness)
    # The service's own loggers; the access log is RedactingAccessLogger's (tested with it).
    with caplog.at_level(logging.DEBUG, logger="controller"):
        await harness.hit(token=RANCHER_KEY)
        await harness.hit(query={"key": RANCHER_KEY, "projectId": "1a9"})
    own = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("controller"))
    assert "project_mismatch" in own and RANCHER_KEY not in own


# -- what the hit does


async def test_an_accepted_hit_wakes_its_target_after_it_is_recorded(harness: Harness) -> None:
    data = await answer(await harness.hit())
    assert harness.events == [f"recorded {data['hit']}", f"wake {harness.target_id}"]


async def test_an_accepted_hit_leaves_a_pending_intent_with_the_drivers_step(harness: Harness) -> None:
    data = await answer(await harness.hit())
    [pending] = await harness.store.pending_intents(harness.target_id)
    assert (pending.hit_id, pending.intent) == (
        data["hit"],
        {"action": "up", "amount": 1, "min": 1, "max": 10},
    )


async def test_the_answer_names_receiver_outcome_and_hit(harness: Harness) -> None:
    data = await answer(await harness.hit())
    assert (data["receiver"], data["outcome"], sorted(data)) == (
        "default/scale-up",
        "accepted",
        ["hit", "outcome", "receiver"],
    )


async def test_a_firing_alertmanager_payload_is_accepted(harness: Harness) -> None:
    data = await answer(await harness.hit(json_body=fixture_body("firing")))
    assert data["outcome"] == "accepted"


async def test_a_resolved_alertmanager_payload_is_ignored_by_default(harness: Harness) -> None:
    data = await answer(await harness.hit(json_body=fixture_body("resolved")))
    assert (data["outcome"], harness.events[-1].startswith("recorded")) == ("ignored", True)


async def test_a_resolved_payload_is_accepted_when_fire_on_has_it(harness: Harness) -> None:
    harness.update(fire_on=frozenset({"firing", "resolved"}))
    data = await answer(await harness.hit(json_body=fixture_body("resolved")))
    assert data["outcome"] == "accepted"


async def test_the_same_alertmanager_notification_twice_is_a_duplicate_of_the_first(harness: Harness) -> None:
    first = await answer(await harness.hit(json_body=fixture_body("firing")))
    second = await answer(await harness.hit(json_body=fixture_body("firing")))
    assert (second["outcome"], second["hit"]) == ("duplicate", first["hit"])


async def test_a_repeated_idempotency_key_is_a_duplicate(harness: Harness) -> None:
    await harness.hit(headers={"Idempotency-Key": "deploy-42"})
    data = await answer(await harness.hit(headers={"Idempotency-Key": "deploy-42"}))
    assert data["outcome"] == "duplicate"


async def test_a_repeated_webhook_id_is_a_duplicate(harness: Harness) -> None:
    await harness.hit(headers={"webhook-id": "msg_1"})
    data = await answer(await harness.hit(headers={"webhook-id": "msg_1"}))
    assert data["outcome"] == "duplicate"


async def test_an_overlong_idempotency_key_is_400_malformed_header(harness: Harness) -> None:
    await assert_error(await harness.hit(headers={"Idempotency-Key": "k" * 256}), 400, "malformed_header")


async def test_a_suspended_receivers_hit_is_recorded_as_suspended(harness: Harness) -> None:
    harness.update(suspend=True)
    data = await answer(await harness.hit())
    assert (data["outcome"], harness.events[-1].startswith("recorded")) == ("suspended", True)


async def test_a_hit_within_the_cooldown_is_answered_cooldown(harness: Harness) -> None:
    harness.update(cooldown_seconds=60.0)
    await harness.hit()
    harness.clock.now += 30
    assert (await answer(await harness.hit()))["outcome"] == "cooldown"


async def test_a_hit_after_the_cooldown_is_accepted(harness: Harness) -> None:
    harness.update(cooldown_seconds=60.0)
    await harness.hit()
    harness.clock.now += 61
    assert (await answer(await harness.hit()))["outcome"] == "accepted"


async def test_a_non_accepted_hit_does_not_wake_the_target(harness: Harness) -> None:
    harness.update(suspend=True)
    await harness.hit()
    assert not any(event.startswith("wake") for event in harness.events)


# -- limits


async def test_over_the_rate_limit_is_429_with_retry_after(harness: Harness) -> None:
    harness.update(rate_limit=RateLimit(requests=1, per_seconds=10))
    await harness.hit()
    response = await harness.hit()
    await assert_error(response, 429, "rate_limited")
    assert response.headers["Retry-After"] == "10"


async def test_the_rate_limit_lets_hits_through_again_with_time(harness: Harness) -> None:
    harness.update(rate_limit=RateLimit(requests=1, per_seconds=10))
    await harness.hit()
    harness.clock.now += 10
    assert (await harness.hit()).status == 200


async def test_a_body_over_the_limit_is_413_body_too_large(harness: Harness) -> None:
    await assert_error(await harness.hit(body=b"x" * (MAX_BODY + 1)), 413, "body_too_large")


async def test_a_chunked_body_over_the_limit_is_413_body_too_large(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY // 512 + 2):
            yield b"x" * 512

    response = await harness.client.post(TRIGGER_PATH, params={"key": harness.token}, data=chunks())
    await assert_error(response, 413, "body_too_large")


async def test_unparseable_json_is_400_malformed_body(harness: Harness) -> None:
    response = await harness.hit(body=b"{not json", headers={"Content-Type": "application/json"})
    await assert_error(response, 400, "malformed_body")


async def test_absurdly_nested_json_is_400_malformed_body(harness: Harness) -> None:
    response = await harness.hit(body=b"[" * 2000 + b"]" * 2000, headers={"Content-Type": "application/json"})
    await assert_error(response, 400, "malformed_body")


async def test_an_empty_json_body_acts(harness: Harness) -> None:
    response = await harness.hit(body=b"", headers={"Content-Type": "application/json"})
    assert (await answer(response))["outcome"] == "accepted"


async def test_a_half_alertmanager_payload_is_400_malformed_body(harness: Harness) -> None:
    await assert_error(
        await harness.hit(json_body={"version": "4", "status": "firing"}), 400, "malformed_body"
    )


async def test_a_plain_text_body_acts(harness: Harness) -> None:
    response = await harness.hit(body=b"{not json", headers={"Content-Type": "text/plain"})
    assert (await answer(response))["outcome"] == "accepted"


async def test_a_closed_store_is_503_with_retry_after(harness: Harness) -> None:
    await harness.store.close()
    response = await harness.hit()
    await assert_error(response, 503, "store_unavailable")
    assert response.headers["Retry-After"] == "1"


async def test_a_full_ledger_is_503_with_its_retry_after(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def full(request: HitRequest) -> HitResult:
        raise LedgerFull("too many pending intents")

    monkeypatch.setattr(harness.store, "record_hit", full)
    response = await harness.hit()
    await assert_error(response, 503, "target_backlog_full")
    assert response.headers["Retry-After"] == "30"


# -- other routes and errors


async def test_an_unknown_path_is_404_not_found(harness: Harness) -> None:
    await assert_error(await harness.client.get("/nowhere"), 404, "not_found")


async def test_get_on_the_endpoint_is_405_allowing_post(harness: Harness) -> None:
    response = await harness.client.get(TRIGGER_PATH)
    await assert_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "POST"


def break_the_store(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug on our side, not the client's: recording a hit raises what no code expects."""

    async def record_hit(_: object) -> None:
        raise KeyError("scaleService")

    monkeypatch.setattr(harness.store, "record_hit", record_hit)


async def test_an_unexpected_error_is_500_without_details(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_the_store(harness, monkeypatch)
    response = await harness.hit()
    await assert_error(response, 500, "internal_error")
    assert "KeyError" not in await response.text()


async def test_an_unexpected_error_is_logged_with_its_traceback(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    break_the_store(harness, monkeypatch)
    await harness.hit()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


async def test_healthz_is_ok(harness: Harness) -> None:
    response = await harness.client.get("/healthz")
    assert (response.status, await answer(response)) == (200, {"status": "ok"})


async def test_readyz_is_200_when_ready(harness: Harness) -> None:
    assert (await harness.client.get("/readyz")).status == 200


async def test_readyz_names_the_failing_check(harness: Harness) -> None:
    await harness.store.close()
    response = await harness.client.get("/readyz")
    assert (response.status, (await answer(response))["failing"]) == (503, ["store"])


async def test_metrics_count_hits_by_receiver_and_outcome(harness: Harness) -> None:
    await harness.hit()
    text = await (await harness.client.get("/metrics")).text()
    assert 'webhook_hits_total{outcome="accepted",receiver="default/scale-up"} 1.0' in text


async def test_metrics_count_errors_by_status_and_code(harness: Harness) -> None:
    await harness.hit(query={})
    text = await (await harness.client.get("/metrics")).text()
    assert 'webhook_hit_errors_total{code="token_missing",status="401"} 1.0' in text


async def test_one_debug_line_per_hit(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="controller.listener"):
        data = await answer(await harness.hit())
    [line] = [r.getMessage() for r in caplog.records if r.name == "controller.listener.handlers"]
    assert line == f"hit {data['hit']} of default/scale-up: accepted"


async def test_a_hit_writes_no_info_line(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="controller.listener"):
        await harness.hit()
    assert [r.getMessage() for r in caplog.records if r.name.startswith("controller.listener")] == []


async def test_the_summary_counts_hits_by_outcome_and_refusals_by_code(harness: Harness) -> None:
    await harness.hit()
    await harness.hit(query={})
    summary = harness.client.app[HIT_SUMMARY]
    assert summary.take(60) == "in the last 60s: 1 hit(s) (1 accepted); 1 refused (1 401 token_missing)"


# -- access log


@pytest.mark.parametrize(
    "query", ["key=eyJhbGc.eyJzdWI.c2ln&projectId=1a5", "token=secret-value", "%6Bey=secret-value"]
)
def test_the_access_log_redacts_tokens(query: str, caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request(
        "POST", f"{TRIGGER_PATH}?{query}", headers={"Authorization": "Bearer eyJh.eyJi.c2ln-auth"}
    )
    access_logger = RedactingAccessLogger(logging.getLogger("test.access"), "")
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        access_logger.log(request, web.Response(status=200), 0.002)
    assert REDACTED in caplog.text
    assert not any(secret in caplog.text for secret in ("eyJ", "secret-value", "auth"))


def test_the_access_log_writes_a_hit_at_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("POST", f"{TRIGGER_PATH}?key=abc")
    access_logger = RedactingAccessLogger(logging.getLogger("test.access"), "")
    with caplog.at_level(logging.INFO, logger="test.access"):
        assert not access_logger.enabled  # aiohttp then skips the line and its redaction
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        access_logger.log(request, web.Response(), 0.0)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


def test_the_access_log_keeps_other_query_parameters(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("POST", f"{TRIGGER_PATH}?key=abc&projectId=1a5")
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        RedactingAccessLogger(logging.getLogger("test.access"), "").log(request, web.Response(), 0.0)
    assert f"{TRIGGER_PATH}?key={REDACTED}&projectId=1a5" in caplog.text


# -- no input is the server's fault


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
ALERTMANAGERISH = st.dictionaries(
    st.sampled_from(["status", "alerts", "groupKey", "receiver"]), JSON, max_size=4
).map(lambda d: {**d, "version": "4"})
CONTENT_TYPES = st.sampled_from(
    ["application/json", "application/alert+json", "text/plain", "", "application/x"]
)
QUERY_NAMES = st.sampled_from(["key", "token", "projectId", "other"]) | st.text(max_size=8)
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@HYPOTHESIS
@given(
    body=st.binary(max_size=256)
    | JSON.map(lambda v: json.dumps(v).encode())
    | ALERTMANAGERISH.map(lambda v: json.dumps(v).encode()),
    content_type=CONTENT_TYPES,
    valid_token=st.booleans(),
)
async def test_random_bodies_never_get_a_5xx(
    harness: Harness, body: bytes, content_type: str, valid_token: bool
) -> None:
    query = {"key": harness.token} if valid_token else {"key": "eyJ" + body.hex()[:40]}
    headers = {"Content-Type": content_type} if content_type else {}
    response = await harness.hit(query=query, headers=headers, body=body)
    assert response.status < 500, await response.text()


@HYPOTHESIS
@given(
    params=st.lists(st.tuples(QUERY_NAMES, st.text(max_size=30)), max_size=5),
    raw=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=40
    ),
)
async def test_random_query_strings_never_get_a_5xx(
    harness: Harness, params: list[tuple[str, str]], raw: str
) -> None:
    first = await harness.client.post(TRIGGER_PATH, params=params)
    second = await harness.client.post(f"{TRIGGER_PATH}?{raw}")
    assert (first.status < 500, second.status < 500) == (True, True), await second.text()
