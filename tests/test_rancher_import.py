"""import-rancher's converter and writer: each of Rancher's stored receivers becomes the manifest that
acts the same, keeping only its key's SHA-256; what can't be expressed is reported, not written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from controller.cli import main
from controller.drivers import load_drivers
from controller.rancher.convert import GenericObject, Unconvertible, convert, dns_label
from controller.rancher.importer import Found, Outcome, convert_all, render, render_stream, write_files
from controller.receivers.loader import load_bytes
from controller.receivers.schema import ReceiverSchema
from controller.receivers.watcher import _rebuild
from controller.store.base import StoredToken
from tests import rancher_objects

DRIVERS = load_drivers()
SCHEMA = ReceiverSchema.load()


def converted(obj: dict[str, Any], *, name: str = "r", namespace: str = "default") -> dict[str, Any]:
    return convert(
        cast(GenericObject, obj), "1a5", name=name, namespace=namespace, drivers=DRIVERS, schema=SCHEMA
    ).manifest


def spec_of(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = converted(obj)["spec"]
    return spec


def with_config(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = obj["resourceData"]
    return {**obj, "resourceData": {**data, "config": {**data["config"], **changes}}}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# -- one receiver of each driver


def test_scale_service_gets_its_project_and_keeps_its_step() -> None:
    assert spec_of(rancher_objects.SCALE_SERVICE) == {
        "driver": "scaleService",
        "scaleServiceConfig": {
            "projectId": "1a5",
            "serviceId": "1s7",
            "action": "up",
            "amount": 2,
            "min": 1,
            "max": 10,
        },
        "rancherKeySha256": digest(rancher_objects.SCALE_SERVICE_KEY),
    }


def test_scale_host_keeps_its_selector_as_given() -> None:
    assert spec_of(rancher_objects.SCALE_HOST)["scaleHostConfig"] == {
        "projectId": "1a5",
        "hostSelector": {"role": "worker"},
        "action": "up",
        "amount": 1,
        "min": 1,
        "max": 5,
    }


def test_scale_host_keeps_a_delete_option() -> None:
    obj = with_config(rancher_objects.SCALE_HOST, action="down", deleteOption="leastRecent")
    assert spec_of(obj)["scaleHostConfig"]["deleteOption"] == "leastRecent"


def test_service_upgrade_gets_its_interval_in_milliseconds() -> None:
    assert spec_of(rancher_objects.SERVICE_UPGRADE)["serviceUpgradeConfig"] == {
        "projectId": "1a5",
        "serviceSelector": {"app": "web"},
        "tag": "v1.4.2",
        "payloadFormat": "dockerhub",
        "startFirst": False,
        "batchSize": 1,
        "intervalMillis": 2000,
    }


def test_service_upgrade_keeps_start_first() -> None:
    obj = with_config(rancher_objects.SERVICE_UPGRADE, startFirst=True)
    assert spec_of(obj)["serviceUpgradeConfig"]["startFirst"] is True


def test_the_default_alibaba_address_type_needs_no_field() -> None:
    obj = with_config(rancher_objects.SERVICE_UPGRADE, payloadFormat="alicloud", addressType="registry")
    assert "addressType" not in spec_of(obj)["serviceUpgradeConfig"]


def test_another_alibaba_address_type_is_kept_where_the_driver_has_the_field_else_reported() -> None:
    obj = with_config(rancher_objects.SERVICE_UPGRADE, payloadFormat="alicloud", addressType="registry-vpc")
    if "addressType" in DRIVERS["serviceUpgrade"].config_schema["properties"]:
        assert spec_of(obj)["serviceUpgradeConfig"]["addressType"] == "registry-vpc"
    else:
        with pytest.raises(Unconvertible, match="addressType"):
            spec_of(obj)


def test_forward_post_gets_its_port_as_a_number() -> None:
    assert spec_of(rancher_objects.FORWARD_POST)["forwardPostConfig"] == {
        "projectId": "1a5",
        "serviceName": "web",
        "port": 8080,
        "path": "/hooks",
    }


def test_forward_post_with_a_port_that_is_no_number_is_reported() -> None:
    with pytest.raises(Unconvertible, match="port"):
        spec_of(with_config(rancher_objects.FORWARD_POST, port="http"))


def test_forward_post_into_another_project_than_its_own_is_reported() -> None:
    with pytest.raises(Unconvertible, match="1a9"):
        spec_of(with_config(rancher_objects.FORWARD_POST, projectId="1a9"))


# -- what can't be expressed


def test_a_driver_this_service_lacks_is_reported() -> None:
    obj = {**rancher_objects.SCALE_SERVICE, "resourceData": {"driver": "scaleKubernetes", "config": {}}}
    with pytest.raises(Unconvertible, match="scaleKubernetes"):
        converted(obj)


def test_a_config_the_schema_refuses_is_reported_with_the_field() -> None:
    with pytest.raises(Unconvertible, match="max"):
        converted(with_config(rancher_objects.SCALE_SERVICE, min=5, max=2))


def test_a_missing_number_is_gos_zero_value() -> None:
    config = dict(rancher_objects.SCALE_SERVICE["resourceData"]["config"])
    del config["min"]
    obj = {**rancher_objects.SCALE_SERVICE, "resourceData": {"driver": "scaleService", "config": config}}
    assert spec_of(obj)["scaleServiceConfig"]["min"] == 0


# -- names and the key


def test_a_rancher_name_becomes_a_dns_label() -> None:
    assert (dns_label("Scale up web!"), dns_label("--Ünïcode  name--"), dns_label("!!!")) == (
        "scale-up-web",
        "n-code-name",
        "",
    )


def test_the_rancher_name_is_kept_in_an_annotation() -> None:
    metadata = converted(rancher_objects.SCALE_SERVICE, name="scale-up-web")["metadata"]
    assert metadata == {
        "name": "scale-up-web",
        "annotations": {"webhook-service.dev/rancher-name": "Scale up web!"},
    }


def test_a_namespace_other_than_default_is_written() -> None:
    assert converted(rancher_objects.SCALE_SERVICE, namespace="monitoring")["metadata"]["namespace"] == (
        "monitoring"
    )


def test_the_key_itself_is_nowhere_in_the_manifest() -> None:
    text = render(converted(rancher_objects.SCALE_SERVICE))
    assert rancher_objects.SCALE_SERVICE_KEY not in text and digest(rancher_objects.SCALE_SERVICE_KEY) in text


def test_a_second_receiver_of_the_same_name_gets_its_object_id() -> None:
    twins = [
        Found("1a5", cast(GenericObject, {**rancher_objects.SCALE_SERVICE, "id": "1go1"})),
        Found("1a5", cast(GenericObject, {**rancher_objects.LEGACY, "name": "Scale up web", "id": "1go2"})),
    ]
    outcome = convert_all(twins, namespace="default", drivers=DRIVERS, schema=SCHEMA)
    assert [c.name for c in outcome.converted] == ["scale-up-web", "scale-up-web-1go2"]


def test_one_unconvertible_receiver_is_reported_and_the_rest_imported() -> None:
    broken = {**rancher_objects.SCALE_HOST, "id": "1go7", "resourceData": {"driver": "nope", "config": {}}}
    found = [Found("1a5", cast(GenericObject, obj)) for obj in (rancher_objects.SCALE_SERVICE, broken)]
    outcome = convert_all(found, namespace="default", drivers=DRIVERS, schema=SCHEMA)
    assert [c.name for c in outcome.converted] == ["scale-up-web"]
    assert outcome.problems == [
        "1a5/'add worker' (1go7): not imported: driver 'nope' is not one this service has"
    ]


# -- the manifest as the service reads it


def test_the_written_manifest_loads_with_the_keys_digest() -> None:
    text = render(converted(rancher_objects.FORWARD_POST, name="relay"))
    load = load_bytes(Path("rancher-relay.yaml"), text.encode(), DRIVERS, SCHEMA)
    [receiver] = load.receivers
    assert (load.problems, receiver.rancher_key_sha256) == ([], digest(rancher_objects.FORWARD_KEY))


def test_the_digest_survives_a_rebuild_from_the_store() -> None:
    text = render(converted(rancher_objects.SCALE_SERVICE, name="web"))
    [receiver] = load_bytes(Path("rancher-web.yaml"), text.encode(), DRIVERS, SCHEMA).receivers
    stored = StoredToken(
        namespace="default", name="web", uid="u1", jti="j1", kid="k1", token="sha256:0",
        driver="scaleService", target_id=receiver.target.id, token_generation="", issued_at=0.0,
        source="rancher-web.yaml",
        spec=receiver.spec_fingerprint(),
    )  # fmt: skip
    rebuilt = _rebuild(stored, DRIVERS, SCHEMA)
    assert rebuilt is not None and rebuilt.rancher_key_sha256 == digest(rancher_objects.SCALE_SERVICE_KEY)
    assert json.loads(stored.spec)["rancherKeySha256"] == rebuilt.rancher_key_sha256


# -- writing files


def outcome_of(*objs: dict[str, Any]) -> Outcome:
    found = [Found("1a5", cast(GenericObject, obj)) for obj in objs]
    return convert_all(found, namespace="default", drivers=DRIVERS, schema=SCHEMA)


def test_each_receiver_is_written_to_its_own_file(tmp_path: Path) -> None:
    outcome = outcome_of(rancher_objects.SCALE_SERVICE, rancher_objects.FORWARD_POST)
    write_files(outcome, tmp_path, force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rancher-relay.yaml", "rancher-scale-up-web.yaml"]
    assert outcome.problems == []


def test_importing_twice_leaves_the_files_unchanged(tmp_path: Path) -> None:
    write_files(outcome_of(rancher_objects.SCALE_SERVICE), tmp_path, force=False)
    again = outcome_of(rancher_objects.SCALE_SERVICE)
    write_files(again, tmp_path, force=False)
    assert (again.done, again.problems) == ([f"{tmp_path / 'rancher-scale-up-web.yaml'}: unchanged"], [])


def test_a_file_that_differs_is_not_overwritten_without_force(tmp_path: Path) -> None:
    edited = tmp_path / "rancher-scale-up-web.yaml"
    edited.write_text("# edited by hand\n")
    outcome = outcome_of(rancher_objects.SCALE_SERVICE)
    write_files(outcome, tmp_path, force=False)
    assert edited.read_text() == "# edited by hand\n"
    assert outcome.problems == [f"{edited}: exists and differs; not overwritten (--force replaces it)"]


def test_force_replaces_a_file_that_differs(tmp_path: Path) -> None:
    edited = tmp_path / "rancher-scale-up-web.yaml"
    edited.write_text("# edited by hand\n")
    outcome = outcome_of(rancher_objects.SCALE_SERVICE)
    write_files(outcome, tmp_path, force=True)
    assert edited.read_text() == render(outcome.converted[0].manifest) and outcome.problems == []


def test_for_kubernetes_the_manifests_are_one_yaml_stream_in_the_namespace() -> None:
    found = [
        Found("1a5", cast(GenericObject, o))
        for o in (rancher_objects.SCALE_SERVICE, rancher_objects.FORWARD_POST)
    ]
    outcome = convert_all(found, namespace="monitoring", drivers=DRIVERS, schema=SCHEMA)
    documents = list(yaml.safe_load_all(render_stream(outcome.converted)))
    assert [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in documents] == [
        ("monitoring", "scale-up-web"),
        ("monitoring", "relay"),
    ]


# -- the command


@pytest.mark.parametrize("cattle_url", [[], ["--cattle-url", "sandbox"]])
def test_the_command_needs_a_real_cattle(
    cattle_url: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CATTLE_URL", raising=False)
    assert main(["import-rancher", *cattle_url, "--receivers", str(tmp_path)]) == 2
    assert "--cattle-url" in capsys.readouterr().err and not any(tmp_path.iterdir())
