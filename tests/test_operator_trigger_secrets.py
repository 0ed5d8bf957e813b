"""A Receiver's token kept in its trigger Secret, against the Kubernetes emulator: when it is minted,
kept and re-minted, and what the Secret holds."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from controller.kube.client import SECRETS, KubeClient, KubeObject
from controller.model import Receiver
from controller.operator.trigger_secrets import KeyHolder, SecretAppeared, SecretNameTaken, TriggerSecrets
from controller.tokens import KeyRing, TokenVerifier
from tests.kubeemu import KubeEmulator
from tests.test_kubeemu import client as client  # a fixture
from tests.test_receivers_sync import NOW, receiver

BASE_URL = "http://webhook.example:8085"
A = "webhook-service.dev/"
UID = "uid-1"


def web_up(*, generation: str = "", amount: int = 1) -> Receiver:
    return receiver(uid=UID, generation=generation, amount=amount)


@pytest.fixture
def keys(tmp_path: Path) -> KeyHolder:
    return KeyHolder(KeyRing.load_or_create(tmp_path / "keys", clock=lambda: NOW))


@pytest.fixture
def secrets(client: KubeClient, keys: KeyHolder) -> TriggerSecrets:
    return TriggerSecrets(client, keys, base_url=BASE_URL, clock=lambda: NOW)


async def secret(client: KubeClient) -> KubeObject:
    return await client.get(SECRETS.named("web-up-trigger", "default"))


def data(obj: KubeObject) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in obj["data"].items()}


async def test_a_receiver_without_a_secret_gets_one_with_its_token_and_url(
    secrets: TriggerSecrets, client: KubeClient, keys: KeyHolder
) -> None:
    token = await secrets.ensure(web_up(), UID)
    assert token.minted
    stored = data(await secret(client))
    claims = TokenVerifier(keys.keyring).verify(stored["token"])
    assert (claims.jti, claims.uid, claims.receiver_key) == (token.jti, UID, "default/web-up")
    assert stored["url"].startswith(f"{BASE_URL}/v1-webhooks/endpoint?key={stored['token']}")


async def test_the_secret_records_what_the_token_was_issued_for_and_is_owned_by_the_receiver(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    token = await secrets.ensure(web_up(generation="7"), UID)
    meta = (await secret(client))["metadata"]
    assert {k: v for k, v in meta["annotations"].items() if k.startswith(A)} == {
        A + "token-id": token.jti,
        A + "token-kid": token.kid,
        A + "token-generation": "7",
        A + "target": "scaleService:1a5/1s7",
        A + "receiver-uid": UID,
    }
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Receiver",
        "web-up",
        UID,
        True,
    )


async def test_an_unchanged_receiver_keeps_its_token_without_a_write(
    secrets: TriggerSecrets, kube: KubeEmulator
) -> None:
    first = await secrets.ensure(web_up(), UID)
    writes = len(list(kube["put"])) + len(list(kube["create"]))
    again = await secrets.ensure(web_up(amount=3), UID)
    assert (again.jti, again.kid, again.minted) == (first.jti, first.kid, False)
    assert len(list(kube["put"])) + len(list(kube["create"])) == writes


async def test_a_new_token_generation_remints_into_the_same_secret(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    first = await secrets.ensure(web_up(), UID)
    old = data(await secret(client))["token"]
    second = await secrets.ensure(web_up(generation="2"), UID)
    assert second.minted and second.jti != first.jti
    assert data(await secret(client))["token"] != old


async def test_a_token_whose_key_left_the_key_ring_is_reminted_with_the_new_key(
    secrets: TriggerSecrets, keys: KeyHolder, tmp_path: Path
) -> None:
    first = await secrets.ensure(web_up(), UID)
    keys.keyring = KeyRing.load_or_create(tmp_path / "other-keys", clock=lambda: NOW)
    second = await secrets.ensure(web_up(), UID)
    assert second.minted and second.kid == keys.keyring.newest_kid != first.kid


async def test_a_secret_that_lost_its_token_gets_a_new_one(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    first = await secrets.ensure(web_up(), UID)
    emptied = await secret(client)
    emptied["data"] = {}
    await client.replace(SECRETS.named("web-up-trigger", "default"), emptied)
    second = await secrets.ensure(web_up(), UID)
    assert second.minted and second.jti != first.jti
    assert data(await secret(client))["token"]


async def test_a_changed_public_url_rewrites_the_url_around_the_same_token(
    secrets: TriggerSecrets, client: KubeClient, keys: KeyHolder
) -> None:
    first = await secrets.ensure(web_up(), UID)
    moved = TriggerSecrets(client, keys, base_url="https://hooks.example", clock=lambda: NOW)
    again = await moved.ensure(web_up(), UID)
    stored = data(await secret(client))
    assert (again.jti, again.minted) == (first.jti, False)
    assert stored["url"].startswith(f"https://hooks.example/v1-webhooks/endpoint?key={stored['token']}")


async def test_a_secret_created_by_someone_else_meanwhile_is_reported(
    secrets: TriggerSecrets, kube: KubeEmulator
) -> None:
    kube["create", kube.resource("v1/secrets")] << 409
    with pytest.raises(SecretAppeared):
        await secrets.ensure(web_up(), UID)


def foreign_secret(**metadata: object) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-up-trigger", "namespace": "default", **metadata},
        "data": {"token": base64.b64encode(b"not ours").decode()},
    }


async def test_a_secret_not_written_by_the_operator_is_not_replaced(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    before = await client.create(SECRETS.within("default"), foreign_secret())
    with pytest.raises(SecretNameTaken, match="web-up-trigger"):
        await secrets.ensure(web_up(), UID)
    assert await secret(client) == before


async def test_a_secret_owned_by_an_earlier_receiver_of_the_same_name_is_not_replaced(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    await secrets.ensure(web_up(), "uid-of-an-earlier-receiver")
    before = await secret(client)
    with pytest.raises(SecretNameTaken):
        await secrets.ensure(web_up(), UID)
    assert await secret(client) == before


async def test_an_owner_reference_without_the_annotation_does_not_make_a_secret_ours(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    owner = {"apiVersion": "webhook-service.dev/v1", "kind": "Receiver", "name": "web-up", "uid": UID}
    before = await client.create(SECRETS.within("default"), foreign_secret(ownerReferences=[owner]))
    with pytest.raises(SecretNameTaken):
        await secrets.ensure(web_up(), UID)
    assert await secret(client) == before


async def test_the_owner_reference_does_not_block_the_receivers_deletion(
    secrets: TriggerSecrets, client: KubeClient
) -> None:
    await secrets.ensure(web_up(), UID)
    [owner] = (await secret(client))["metadata"]["ownerReferences"]
    assert "blockOwnerDeletion" not in owner
