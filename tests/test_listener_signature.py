"""Signed senders through the listener: a receiver with ``spec.signature`` and its secret.

Built like tests/test_listener.py — a real key ring, SQLite store, scaleService driver and receiver_set,
a fake clock — with the receiver's secret in a file in tmp_path (standalone) or, for operator mode,
in a Secret on the emulated Kubernetes API.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from controller.drivers import load_drivers
from controller.drivers.scale_service import ScaleServiceConfig
from controller.kube.client import SECRETS, KubeClient
from controller.listener import TRIGGER_PATH
from controller.listener.signature import SignatureSecrets
from controller.manifest import SignatureSpec
from controller.metrics import Metrics
from controller.model import ActiveReceiver, RateLimit, Receiver
from controller.receiver_set import ReceiverSet
from controller.settings import Settings
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier, mint_token
from controller.wiring import wire
from tests.kubeemu import KubeEmulator
from tests.specs import receiver_spec

NOW = 1_800_000_000
KEY = b"0123456789abcdef0123456789abcdef"
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
BODY = b'{"event":"deploy","ref":"main"}'
CONFIG: ScaleServiceConfig = {
    "projectId": "1a5",
    "serviceId": "1s7",
    "action": "up",
    "amount": 1,
    "min": 1,
    "max": 10,
}

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@dataclasses.dataclass
class Signed:
    """A listener whose one receiver requires a signature."""

    client: TestClient[web.Request, web.Application]
    receiver_set: ReceiverSet
    store: SqliteStore
    keyring: KeyRing
    active: ActiveReceiver

    @property
    def target_id(self) -> str:
        return self.active.receiver.target.id

    def update(self, **changes: object) -> None:
        receiver = dataclasses.replace(self.active.receiver, **changes)  # type: ignore[arg-type]
        self.active = dataclasses.replace(self.active, receiver=receiver)
        self.receiver_set.put(self.active)

    async def hit(
        self, headers: dict[str, str] | None = None, *, body: bytes = BODY, token: str | None = None
    ) -> ClientResponse:
        params = {"key": token or self.active.token, "projectId": "1a5"}
        headers = {"Content-Type": "application/json", **(headers or {})}
        return await self.client.post(TRIGGER_PATH, params=params, headers=headers, data=body)


def standard_webhooks(key: bytes = KEY, *, msg_id: str = "msg_1", timestamp: int = NOW) -> dict[str, str]:
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + BODY, hashlib.sha256).digest()
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def github(secret: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret, BODY, hashlib.sha256).hexdigest()}


async def build(
    tmp_path: Path,
    aiohttp_client: AiohttpClient,
    signature: SignatureSpec,
    signatures: SignatureSecrets,
) -> Signed:
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    drivers = load_drivers()
    spec = receiver_spec("scaleService", CONFIG, signature=signature)
    receiver = Receiver(
        namespace="default",
        name="signed",
        driver="scaleService",
        spec=spec,
        target=drivers["scaleService"].target(spec, "default"),
        signature=signature,
    )
    token, kid = mint_token(keyring, receiver=receiver, uid="uid-1", jti="jti-1", now=NOW)
    active = ActiveReceiver(receiver=receiver, uid="uid-1", jti="jti-1", token=token, kid=kid)
    receiver_set = ReceiverSet()
    receiver_set.put(active)
    receiver_set.loaded = True
    store = SqliteStore(tmp_path / "state.db")
    wiring = wire(
        Settings(state_dir=tmp_path, max_body_bytes=4096, cattle_url=""),
        store=store,
        receiver_set=receiver_set,
        verifier=TokenVerifier(keyring),
        drivers=drivers,
        metrics=Metrics(),
        wake=lambda _target: None,
        clock=lambda: float(NOW),
        signatures=signatures,
    )
    client = await aiohttp_client(wiring.app)
    return Signed(client, receiver_set, store, keyring, active)


@pytest.fixture
async def signed(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Signed]:
    """A standard-webhooks receiver whose secret is a whsec_ file."""
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WHSEC + "\n")
    signature: SignatureSpec = {"scheme": "standard-webhooks", "secretFile": str(secret_file)}
    harness = await build(tmp_path, aiohttp_client, signature, SignatureSecrets(kube=None))
    yield harness
    await harness.store.close()


async def error_code(response: ClientResponse) -> tuple[int, str]:
    data = await response.json()
    return response.status, str(data["code"])


def remove(path: str) -> None:
    Path(path).unlink()


async def nothing_recorded(harness: Signed) -> bool:
    status = await harness.store.read_status()
    return status.last_hits == {} and await harness.store.pending_intents(harness.target_id) == []


# -- standard-webhooks with a secretFile


async def test_a_signed_hit_is_accepted(signed: Signed) -> None:
    response = await signed.hit(standard_webhooks())
    assert (response.status, (await response.json())["outcome"]) == (200, "accepted")


async def test_an_unsigned_hit_is_401_signature_missing_and_not_recorded(signed: Signed) -> None:
    assert await error_code(await signed.hit()) == (401, "signature_missing")
    assert await nothing_recorded(signed)


async def test_a_wrongly_signed_hit_is_401_signature_invalid(signed: Signed) -> None:
    response = await signed.hit(standard_webhooks(b"not the secret"))
    assert await error_code(response) == (401, "signature_invalid")
    assert await nothing_recorded(signed)


async def test_a_signed_hit_with_another_body_is_401_signature_invalid(signed: Signed) -> None:
    response = await signed.hit(standard_webhooks(), body=b'{"event":"deploy","ref":"evil"}')
    assert await error_code(response) == (401, "signature_invalid")


async def test_an_old_signed_hit_is_401_signature_expired(signed: Signed) -> None:
    response = await signed.hit(standard_webhooks(timestamp=NOW - 600))
    assert await error_code(response) == (401, "signature_expired")


async def test_a_bad_token_is_still_401_token_malformed(signed: Signed) -> None:
    response = await signed.hit(standard_webhooks(), token="not-a-jwt")
    assert await error_code(response) == (401, "token_malformed")


async def test_a_removed_receivers_token_is_still_403_token_revoked(signed: Signed) -> None:
    signed.receiver_set.remove(signed.active.key)
    assert await error_code(await signed.hit()) == (403, "token_revoked")


async def test_unsigned_hits_do_not_use_up_the_rate_limit(signed: Signed) -> None:
    signed.update(rate_limit=RateLimit(requests=1, per_seconds=60.0))
    for _ in range(3):
        assert await error_code(await signed.hit()) == (401, "signature_missing")
    assert (await signed.hit(standard_webhooks(msg_id="msg_1"))).status == 200
    assert await error_code(await signed.hit(standard_webhooks(msg_id="msg_2"))) == (429, "rate_limited")


async def test_the_webhook_id_makes_a_resent_hit_a_duplicate(signed: Signed) -> None:
    first = await (await signed.hit(standard_webhooks())).json()
    again = await (await signed.hit(standard_webhooks())).json()
    assert (again["outcome"], again["hit"]) == ("duplicate", first["hit"])


async def test_an_unreadable_secret_file_is_503_with_retry_after(signed: Signed) -> None:
    signature = signed.active.receiver.signature
    assert signature is not None
    remove(signature["secretFile"])
    response = await signed.hit(standard_webhooks())
    assert await error_code(response) == (503, "signature_secret_unavailable")
    assert response.headers["Retry-After"]
    assert await nothing_recorded(signed)


async def test_signature_errors_are_counted_in_the_metrics(signed: Signed) -> None:
    await signed.hit()
    metrics = await (await signed.client.get("/metrics")).text()
    assert 'webhook_hit_errors_total{code="signature_missing",status="401"} 1.0' in metrics


# -- github with a secretRef (operator mode)


@pytest.fixture
async def kube_client(kube: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with aiohttp.ClientSession() as session:
        yield KubeClient(session, str(kube.url), {})


async def create_secret(client: KubeClient, name: str, secret: bytes) -> None:
    await client.create(
        SECRETS.within("default"),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"secret": base64.b64encode(secret).decode()},
        },
    )


async def test_a_github_hit_signed_with_the_secret_refs_secret_is_accepted(
    tmp_path: Path, aiohttp_client: AiohttpClient, kube_client: KubeClient
) -> None:
    await create_secret(kube_client, "gh-hook", b"gh-shared-secret")
    signature: SignatureSpec = {"scheme": "github", "secretRef": {"name": "gh-hook"}}
    harness = await build(tmp_path, aiohttp_client, signature, SignatureSecrets(kube=kube_client))
    try:
        assert (await harness.hit(github(b"gh-shared-secret"))).status == 200
        assert await error_code(await harness.hit(github(b"guess"))) == (401, "signature_invalid")
    finally:
        await harness.store.close()


async def test_a_missing_secret_refs_secret_is_503(
    tmp_path: Path, aiohttp_client: AiohttpClient, kube_client: KubeClient
) -> None:
    signature: SignatureSpec = {"scheme": "github", "secretRef": {"name": "absent"}}
    harness = await build(tmp_path, aiohttp_client, signature, SignatureSecrets(kube=kube_client))
    try:
        response = await harness.hit(github(b"gh-shared-secret"))
        assert await error_code(response) == (503, "signature_secret_unavailable")
    finally:
        await harness.store.close()


async def test_a_secret_ref_in_standalone_mode_is_401_naming_the_reason(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    signature: SignatureSpec = {"scheme": "github", "secretRef": {"name": "gh-hook"}}
    harness = await build(tmp_path, aiohttp_client, signature, SignatureSecrets(kube=None))
    try:
        response = await harness.hit(github(b"gh-shared-secret"))
        data = await response.json()
        assert (response.status, data["code"]) == (401, "signature_invalid")
        assert "operator mode" in data["message"]
    finally:
        await harness.store.close()


async def test_a_rotated_secret_is_used_once_the_cache_expires(
    tmp_path: Path, aiohttp_client: AiohttpClient, kube_client: KubeClient
) -> None:
    now = [0.0]
    await create_secret(kube_client, "gh-hook", b"first")
    signature: SignatureSpec = {"scheme": "github", "secretRef": {"name": "gh-hook"}}
    secrets = SignatureSecrets(kube=kube_client, cache_seconds=5.0, clock=lambda: now[0])
    harness = await build(tmp_path, aiohttp_client, signature, secrets)
    try:
        assert (await harness.hit(github(b"first"), body=BODY)).status == 200
        secret = await kube_client.get(SECRETS.named("gh-hook", "default"))
        secret["data"] = {"secret": base64.b64encode(b"second").decode()}
        await kube_client.replace(SECRETS.named("gh-hook", "default"), secret)
        assert await error_code(await harness.hit(github(b"second"))) == (401, "signature_invalid")
        now[0] = 6.0
        assert (await harness.hit(github(b"second"))).status == 200
    finally:
        await harness.store.close()
