"""Receivers' own Cattle credentials (``spec.cattleSecretRef``): a Secret that can't serve is a refusal
naming it, never a crash, and a good one gives a client for its URL."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from controller.drivers.base import CATTLE_SECRET_CLAIM, TargetRefused
from controller.kube.client import SECRETS, KubeClient
from controller.metrics import Metrics
from controller.model import Target
from controller.operator.cattle import SecretCattleClients
from tests.kubeemu import KubeEmulator
from tests.test_kubeemu import client as client  # a fixture

NS = "shop"
CLAIMS = {"projectId": "1a5", "serviceId": "1s7", CATTLE_SECRET_CLAIM: f"{NS}/rancher"}
TARGET = Target(driver="scaleService", key="1a5/1s7@shop/rancher", project_id="1a5", claims=CLAIMS)


@pytest.fixture(autouse=True)
def namespace(kube: KubeEmulator) -> None:
    kube.add_namespaces(NS)


async def put_secret(client: KubeClient, data: dict[str, str]) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "rancher", "namespace": NS},
        "data": data,
    }
    await client.create(SECRETS.within(NS), secret)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def for_target(client: KubeClient) -> str:
    async with aiohttp.ClientSession() as session:
        cattle = await SecretCattleClients(client, session, Metrics(), timeout=1.0).for_target(TARGET)
        return cattle.base_url


async def test_a_good_secret_gives_a_client_for_its_url(client: KubeClient) -> None:
    await put_secret(
        client, {"url": b64("http://rancher:8080/v2-beta/"), "accessKey": b64("a"), "secretKey": b64("s")}
    )
    assert await for_target(client) == "http://rancher:8080/v2-beta"


@pytest.mark.parametrize(
    "url",
    [
        "not base64!",  # not base64 at all
        base64.b64encode(b"\xff\xfe\xfd").decode(),  # base64, but not UTF-8 text
    ],
)
async def test_a_value_that_is_not_base64_text_is_a_refusal_naming_the_secret(
    client: KubeClient, url: str
) -> None:
    await put_secret(client, {"url": url, "accessKey": b64("a"), "secretKey": b64("s")})
    with pytest.raises(TargetRefused, match=f"Secret {NS}/rancher holds a value that is not base64 text"):
        await for_target(client)
