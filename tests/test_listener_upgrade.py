"""The listener's body hook (``BodyReader``), with serviceUpgrade: the body, not the
spec, decides whether a hit acts and what its intent is. Built on test_listener_forward's harness."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controller.model import ActiveReceiver, Receiver
from controller.tokens import mint_token
from tests.specs import receiver_spec
from tests.test_listener_forward import AiohttpClient, Harness, make_harness

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
TARGET = "serviceUpgrade:1a5/app=web"
SPEC = receiver_spec(
    "serviceUpgrade",
    {
        "projectId": "1a5",
        "serviceSelector": {"app": "web"},
        "tag": "v1.*",
        "payloadFormat": "dockerhub",
    },
)


@pytest.fixture
async def harness(tmp_path: Path, aiohttp_client: AiohttpClient) -> AsyncIterator[Harness]:
    async with make_harness(tmp_path, aiohttp_client, None) as h:
        yield h


def add(harness: Harness, name: str = "upgrade", **changes: Any) -> str:
    driver = harness.drivers["serviceUpgrade"]
    receiver = Receiver(
        namespace="default",
        name=name,
        driver="serviceUpgrade",
        spec=SPEC,
        target=driver.target(SPEC, "default"),
        **changes,
    )
    token, kid = mint_token(harness.keyring, receiver=receiver, uid=f"uid-{name}", jti=f"jti-{name}", now=1.0)
    harness.receiver_set.put(
        ActiveReceiver(receiver, uid=f"uid-{name}", jti=f"jti-{name}", token=token, kid=kid)
    )
    return token


def push(tag: str = "v1.4.2") -> bytes:
    body = json.loads((FIXTURES / "dockerhub-push.json").read_text())
    body["push_data"]["tag"] = tag
    return json.dumps(body).encode()


async def test_a_docker_hub_push_is_accepted_with_the_image_as_its_intent(harness: Harness) -> None:
    response = await harness.hit(add(harness), body=push(), content_type="application/json")
    assert (response.status, (await response.json())["outcome"]) == (200, "accepted")
    [intent] = await harness.store.pending_intents(TARGET)
    assert intent.intent["image"] == "acme/web:v1.4.2"


async def test_a_push_of_another_tag_is_200_ignored_with_the_reason(harness: Harness) -> None:
    response = await harness.hit(add(harness), body=push("v2.0"), content_type="application/json")
    assert (response.status, (await response.json())["outcome"]) == (200, "ignored")
    hit = (await harness.store.read_status()).last_hits["default/upgrade"]
    assert hit.reason == "tag v2.0 does not match v1.*"
    assert await harness.store.pending_intents(TARGET) == []


async def test_a_body_of_another_format_is_400_naming_the_field(harness: Harness) -> None:
    body = (FIXTURES / "azure-push.json").read_bytes()
    response = await harness.hit(add(harness), body=body, content_type="application/json")
    answer = await response.json()
    assert (response.status, answer["code"]) == (400, "malformed_body")
    assert "push_data.tag" in answer["message"]
    assert (await harness.store.read_status()).last_hits == {}


async def test_a_suspended_receiver_does_not_read_the_body(harness: Harness) -> None:
    response = await harness.hit(add(harness, suspend=True), body=b"not json", content_type="text/plain")
    assert (response.status, (await response.json())["outcome"]) == (200, "suspended")
