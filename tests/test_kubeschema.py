"""The CRDs' schemas in the emulator (tests/kubeschema.py): custom-resource writes pruned, defaulted and
validated as the API server does it, so the operator meets the same refusals as in a real cluster.

Every test writes through our ``KubeClient`` to the ``kube`` fixture, which applies crds/*.yaml; the
422 answers are read raw where the test is about their ``details.causes``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from controller.kube.client import LEDGERS, RECEIVERS, KubeClient, KubeObject
from controller.kube.errors import KubeInvalid
from tests.kubeemu import KubeEmulator
from tests.kubeschema import NotStructural

NS = "default"
CONFIG = {"projectId": "1a5", "serviceId": "1s7", "action": "up", "amount": 1, "min": 1, "max": 10}


@pytest.fixture
async def client(kube: KubeEmulator) -> AsyncIterator[KubeClient]:
    async with aiohttp.ClientSession() as session:
        yield KubeClient(session, str(kube.url), {})


def receiver(**spec: Any) -> KubeObject:
    return {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": "web-up", "namespace": NS, "labels": {"team": "a"}},
        "spec": {"driver": "scaleService", "scaleServiceConfig": CONFIG, **spec},
    }


async def refusal(kube: KubeEmulator, method: str, path: str, body: Any) -> dict[str, Any]:
    """The Status of a write the emulator answers 422."""
    headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{str(kube.url).rstrip('/')}{path}", json=body, headers=headers) as answer,
    ):
        assert answer.status == 422
        status: dict[str, Any] = await answer.json()
        return status


RECEIVERS_PATH = f"/apis/webhook-service.dev/v1/namespaces/{NS}/receivers"


async def test_a_misspelt_field_is_pruned(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver(cooldownSecond=30))
    assert "cooldownSecond" not in created["spec"]
    assert "cooldownSecond" not in (await client.get(RECEIVERS.named("web-up", NS)))["spec"]


async def test_a_free_form_field_is_kept_whole_nulls_included(client: KubeClient) -> None:
    state = {"hits": [{"id": "h1", "reason": None}], "desired": None}
    body = {"metadata": {"name": "web"}, "spec": {"target": "scaleService:1a5/1s7"}, "ledger": state}
    assert (await client.create(LEDGERS.within(NS), body))["ledger"] == state


async def test_metadata_is_kept_whole(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver())
    assert created["metadata"]["labels"] == {"team": "a"}


async def test_defaults_come_from_the_schema(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver())
    spec = created["spec"]
    assert (spec["fireOn"], spec["dedupeWindowSeconds"]) == (["firing"], 60)
    assert (spec["cooldownSeconds"], spec["suspend"]) == (0, False)


async def test_a_given_value_is_not_replaced_by_the_default(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver(fireOn=["resolved"], dedupeWindowSeconds=5))
    assert (created["spec"]["fireOn"], created["spec"]["dedupeWindowSeconds"]) == (["resolved"], 5)


async def test_a_null_field_gets_its_default(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver(dedupeWindowSeconds=None))
    assert created["spec"]["dedupeWindowSeconds"] == 60


async def test_an_object_seeded_directly_reads_back_defaulted(kube: KubeEmulator, client: KubeClient) -> None:
    kube.objects["webhook-service.dev/v1/receivers", NS, "seeded"] = {"spec": {"driver": "scaleService"}}
    assert (await client.get(RECEIVERS.named("seeded", NS)))["spec"]["dedupeWindowSeconds"] == 60


async def test_a_wrong_type_is_422_naming_its_field(kube: KubeEmulator) -> None:
    body = receiver(scaleServiceConfig={**CONFIG, "amount": "one"})
    status = await refusal(kube, "POST", RECEIVERS_PATH, body)
    assert (status["kind"], status["reason"]) == ("Status", "Invalid")
    [cause] = status["details"]["causes"]
    assert cause == {
        "reason": "FieldValueInvalid",
        "field": "spec.scaleServiceConfig.amount",
        "message": 'Invalid value: "one": spec.scaleServiceConfig.amount in body must be of type integer',
    }
    assert status["message"].startswith(
        'Receiver.webhook-service.dev "web-up" is invalid: spec.scaleServiceConfig.amount: Invalid value:'
    )


async def test_every_invalid_field_is_a_cause(kube: KubeEmulator) -> None:
    config = {"projectId": "5", "serviceId": "1s7", "action": "sideways", "amount": 0, "min": 1}
    status = await refusal(kube, "POST", RECEIVERS_PATH, receiver(scaleServiceConfig=config, fireOn=[]))
    causes = {cause["field"]: cause["reason"] for cause in status["details"]["causes"]}
    assert causes == {
        "spec.fireOn": "FieldValueInvalid",  # minItems
        "spec.scaleServiceConfig.max": "FieldValueRequired",
        "spec.scaleServiceConfig.projectId": "FieldValueInvalid",  # pattern
        "spec.scaleServiceConfig.action": "FieldValueNotSupported",  # enum
        "spec.scaleServiceConfig.amount": "FieldValueInvalid",  # minimum
    }


async def test_an_invalid_write_changes_nothing(kube: KubeEmulator, client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver())
    with pytest.raises(KubeInvalid, match=r"spec\.cooldownSeconds: Invalid value: -1"):
        await client.patch(RECEIVERS.named("web-up", NS), {"spec": {"cooldownSeconds": -1}})
    assert await client.get(RECEIVERS.named("web-up", NS)) == created


async def test_a_replace_is_validated(client: KubeClient) -> None:
    created = await client.create(RECEIVERS.within(NS), receiver())
    body = {**receiver(suspend="yes"), "metadata": created["metadata"]}
    with pytest.raises(KubeInvalid, match=r"spec\.suspend: Invalid value"):
        await client.replace(RECEIVERS.named("web-up", NS), body)


async def test_a_status_write_is_validated(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    with pytest.raises(KubeInvalid, match=r"status\.observedGeneration: Invalid value"):
        await client.patch(
            RECEIVERS.named("web-up", NS, subresource="status"), {"status": {"observedGeneration": "2"}}
        )


async def test_a_status_write_is_pruned(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    status = {"target": "scaleService:1a5/1s7", "ready": True}
    patched = await client.patch(RECEIVERS.named("web-up", NS, subresource="status"), {"status": status})
    assert patched["status"] == {"target": "scaleService:1a5/1s7"}


async def test_a_nullable_field_keeps_its_null(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    status = {"scale": {"desired": None, "observed": 3}}
    patch = RECEIVERS.named("web-up", NS, subresource="status")
    assert (await client.replace(patch, {**(await client.get(patch)), "status": status}))["status"] == status


async def test_conditions_are_a_map_keyed_by_type(client: KubeClient) -> None:
    await client.create(RECEIVERS.within(NS), receiver())
    ready = {"type": "Ready", "status": "True"}
    with pytest.raises(KubeInvalid, match=r'status\.conditions\[1\]: Duplicate value: \{"type":"Ready"\}'):
        await client.patch(
            RECEIVERS.named("web-up", NS, subresource="status"), {"status": {"conditions": [ready, ready]}}
        )


@pytest.mark.parametrize("port", [8080, "60080"])
async def test_an_int_or_string_field_takes_either(client: KubeClient, port: int | str) -> None:
    config = {"projectId": "1a5", "serviceName": "web", "port": port}
    created = await client.create(
        RECEIVERS.within(NS), receiver(driver="forwardPost", forwardPostConfig=config)
    )
    assert created["spec"]["forwardPostConfig"] == {**config, "path": "/"}


@pytest.mark.parametrize("port", [70000, "port", True])
async def test_an_int_or_string_field_refuses_what_no_alternative_admits(
    client: KubeClient, port: Any
) -> None:
    config = {"projectId": "1a5", "serviceName": "web", "port": port}
    with pytest.raises(KubeInvalid, match=r"spec\.forwardPostConfig\.port: Invalid value"):
        await client.create(RECEIVERS.within(NS), receiver(driver="forwardPost", forwardPostConfig=config))


async def test_a_posted_crd_is_served_with_its_schema(kube: KubeEmulator, client: KubeClient) -> None:
    crd = crd_document({"type": "object", "properties": {"spec": {"type": "object", "properties": {}}}})
    async with aiohttp.ClientSession() as session:
        url = f"{str(kube.url).rstrip('/')}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        async with session.post(url, json=crd) as answer:
            assert answer.status == 201
        async with session.post(
            f"{str(kube.url).rstrip('/')}/apis/example.dev/v1/namespaces/{NS}/widgets",
            json={"metadata": {"name": "w"}, "spec": {"typo": 1}},
        ) as answer:
            assert (answer.status, (await answer.json())["spec"]) == (201, {})


def test_a_crd_whose_schema_is_not_structural_is_refused(kube: KubeEmulator) -> None:
    port = {
        "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}],
        "x-kubernetes-int-or-string": True,
    }
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"port": port}}}}
    with pytest.raises(NotStructural, match=r"port\.anyOf\[0\]: \['type'\] must be empty to be structural"):
        kube.apply_crd(crd_document(schema))


def test_a_field_without_a_type_is_not_structural(kube: KubeEmulator) -> None:
    schema = {"type": "object", "properties": {"spec": {"description": "anything"}}}
    with pytest.raises(NotStructural, match=r"properties\.spec\.type: Required value"):
        kube.apply_crd(crd_document(schema))


def test_a_schema_keyword_the_emulator_does_not_apply_fails_loudly(kube: KubeEmulator) -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": []}}}
    with pytest.raises(NotImplementedError, match="x-kubernetes-validations"):
        kube.apply_crd(crd_document(schema))


def crd_document(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.dev"},
        "spec": {
            "group": "example.dev",
            "scope": "Namespaced",
            "names": {"kind": "Widget", "plural": "widgets"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}
            ],
        },
    }
