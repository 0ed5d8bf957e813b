"""The CRD schema and the manifest loader: what a good manifest becomes, and how each mistake is reported."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.drivers import load_drivers
from controller.drivers.contract import Driver, DriverSet
from controller.model import Problem, RateLimit
from controller.receivers.crd import receiver_crd
from controller.receivers.loader import FileLoad, load_documents, load_paths
from controller.receivers.schema import ReceiverSchema, apply_defaults, to_json_schema

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = Path(__file__).resolve().parent / "manifests"


@pytest.fixture
def drivers() -> DriverSet:
    return load_drivers()


@pytest.fixture
def schema() -> ReceiverSchema:
    return ReceiverSchema.load()


def load(name: str, drivers: Mapping[str, Driver], schema: ReceiverSchema) -> FileLoad:
    return load_documents(MANIFESTS / name, drivers, schema)


def paths_of(problems: list[Problem]) -> list[str]:
    return [p.path for p in problems]


def all_properties(node: Mapping[str, Any], path: str = "") -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, sub in (node.get("properties") or {}).items():
        yield f"{path}.{name}".lstrip("."), sub
        yield from all_properties(sub, f"{path}.{name}")
    if isinstance(node.get("items"), Mapping):
        yield f"{path}[]", node["items"]
        yield from all_properties(node["items"], f"{path}[]")


# -- the CRD


def test_every_crd_property_has_a_description(schema: ReceiverSchema) -> None:
    undescribed = [path for path, sub in all_properties(schema.openapi) if not sub.get("description")]
    assert undescribed == []


def test_crd_names_and_printer_columns() -> None:
    crd = receiver_crd(load_drivers().values())
    assert crd["metadata"]["name"] == "receivers.webhook-service.dev"
    assert crd["spec"]["names"]["shortNames"] == ["rcv"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == ["Driver", "Target", "Action", "Ready", "Last Hit", "Age"]


def test_schema_is_found_whatever_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert ReceiverSchema.load().openapi["properties"]["spec"]["required"] == ["driver"]


def test_nullable_becomes_a_null_type_and_kubernetes_keys_are_dropped() -> None:
    converted = to_json_schema(
        {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"a": {"type": "string", "nullable": True}},
        }
    )
    assert converted == {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}


def test_defaults_fill_a_copy_and_leave_the_input_alone(schema: ReceiverSchema) -> None:
    spec: dict[str, Any] = {"driver": "scaleService", "fireOn": None}
    defaulted = apply_defaults(spec, schema.spec_schema)
    assert defaulted["fireOn"] == ["firing"]
    assert defaulted["dedupeWindowSeconds"] == 60
    assert spec == {"driver": "scaleService", "fireOn": None}


# -- good manifests


def test_examples_load_without_problems(drivers: DriverSet) -> None:
    receivers, problems = load_paths([ROOT / "examples" / "receivers"], drivers)
    assert problems == []
    assert sorted(r.key for r in receivers) == [
        "default/ci-relay",
        "default/web-deploy",
        "default/web-down",
        "default/web-up",
        "default/workers-down",
    ]


def test_multi_document_file_skips_empty_documents(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("good/pair.yaml", drivers, schema)
    assert result.problems == []
    assert [r.name for r in result.receivers] == ["web-up", "web-down"]
    assert result.documents == {"default/web-up": 0, "default/web-down": 2}


def test_receiver_fields_come_from_the_spec(drivers: DriverSet, schema: ReceiverSchema) -> None:
    up = load("good/pair.yaml", drivers, schema).receivers[0]
    assert up.target.id == "scaleService:1a5/1s7"
    assert up.rate_limit == RateLimit(requests=60, per_seconds=60.0)
    assert up.fire_on == frozenset({"firing"})
    assert up.source == str(MANIFESTS / "good/pair.yaml")


def test_defaults_apply_to_a_minimal_manifest(drivers: DriverSet, schema: ReceiverSchema) -> None:
    receiver = load("good/minimal.yml", drivers, schema).receivers[0]
    assert (receiver.fire_on, receiver.cooldown_seconds, receiver.dedupe_window_seconds) == (
        frozenset({"firing"}),
        0.0,
        60.0,
    )
    assert (receiver.suspend, receiver.rate_limit) == (False, None)
    assert receiver.spec["fireOn"] == ["firing"]


def test_metadata_gives_namespace_uid_and_token_generation(
    drivers: DriverSet, schema: ReceiverSchema
) -> None:
    receiver = load("good/minimal.yml", drivers, schema).receivers[0]
    assert receiver.key == "shop/api.scale-up"
    assert receiver.uid == "7d3c1b9e-0000-4000-8000-000000000001"
    assert receiver.token_generation == "2"


# -- broken manifests


def test_unparseable_yaml_makes_the_file_unreadable(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/not-yaml.yaml", drivers, schema)
    assert not result.readable
    assert [str(p) for p in result.problems] == [
        f"{MANIFESTS / 'broken/not-yaml.yaml'}: not valid YAML: "
        "line 4, column 5: did not find expected ',' or '}'"
    ]


def test_missing_file_is_unreadable(tmp_path: Path, drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load_documents(tmp_path / "gone.yaml", drivers, schema)
    assert not result.readable
    assert "cannot read the file" in result.problems[0].message


def test_a_document_must_be_a_mapping(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/not-a-mapping.yaml", drivers, schema)
    assert result.readable
    assert [(p.document, p.message) for p in result.problems] == [
        (0, "must be a mapping (a Receiver manifest), not list")
    ]


def test_other_kinds_are_problems(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/wrong-kind.yaml", drivers, schema)
    assert paths_of(result.problems) == ["apiVersion", "kind"]
    assert result.receivers == []


def test_names_must_be_dns_1123(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/bad-name.yaml", drivers, schema)
    assert paths_of(result.problems) == ["metadata.name", "metadata.namespace"]


def test_names_of_invalid_documents_are_still_reported(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/schema-errors.yaml", drivers, schema)
    assert result.receivers == []
    assert result.names == {"default/web-up"}


def test_each_schema_error_is_one_problem_with_its_field_path(
    drivers: DriverSet, schema: ReceiverSchema
) -> None:
    result = load("broken/schema-errors.yaml", drivers, schema)
    assert paths_of(result.problems) == [
        "spec.fireOn",
        "spec.rateLimit.perSeconds",
        "spec.scaleServiceConfig.action",
        "spec.scaleServiceConfig.amount",
        "spec.scaleServiceConfig.projectId",
        "spec.scaleServiceConfig.serviceId",
        "spec.suspend",
    ]


def test_schema_messages_are_plain(drivers: DriverSet, schema: ReceiverSchema) -> None:
    problems = {p.path: p.message for p in load("broken/schema-errors.yaml", drivers, schema).problems}
    assert problems["spec.scaleServiceConfig.amount"] == "must be at least 1 (got 0)"
    assert problems["spec.scaleServiceConfig.action"] == "must be one of up, down (got 'sideways')"
    assert problems["spec.scaleServiceConfig.serviceId"] == "required field is missing"


def test_problem_text_names_file_document_and_field(drivers: DriverSet, schema: ReceiverSchema) -> None:
    problem = load("broken/one-of-two.yaml", drivers, schema).problems[0]
    assert str(problem) == (
        f"{MANIFESTS / 'broken/one-of-two.yaml'}[1]: "
        "spec.scaleServiceConfig.amount: must be at least 1 (got -1)"
    )


def test_unknown_fields_are_problems(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/unknown-field.yaml", drivers, schema)
    assert [(p.path, p.message) for p in result.problems] == [("spec.suspended", "unknown field")]


def test_the_drivers_config_field_is_required(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/missing-config.yaml", drivers, schema)
    assert [(p.path, p.message) for p in result.problems] == [
        ("spec.scaleServiceConfig", "required when driver is scaleService")
    ]


def test_the_driver_checks_meaning(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/max-below-min.yaml", drivers, schema)
    assert [(p.path, p.message) for p in result.problems] == [
        ("spec.scaleServiceConfig.max", "max (2) must be >= min (5)")
    ]


def test_one_broken_document_does_not_stop_the_others(drivers: DriverSet, schema: ReceiverSchema) -> None:
    result = load("broken/one-of-two.yaml", drivers, schema)
    assert [r.key for r in result.receivers] == ["default/web-up"]
    assert result.names == {"default/web-up", "default/web-down"}


def test_a_name_twice_in_one_file_is_a_problem(
    tmp_path: Path, drivers: DriverSet, schema: ReceiverSchema
) -> None:
    text = (MANIFESTS / "duplicates/a.yaml").read_text()
    (tmp_path / "twice.yaml").write_text(f"{text}---\n{text}")
    result = load_documents(tmp_path / "twice.yaml", drivers, schema)
    assert len(result.receivers) == 1
    assert [(p.document, p.path) for p in result.problems] == [(1, "metadata.name")]


# -- load_paths


def test_a_name_declared_in_two_files_keeps_the_first(drivers: DriverSet) -> None:
    receivers, problems = load_paths([MANIFESTS / "duplicates"], drivers)
    assert [r.source for r in receivers] == [str(MANIFESTS / "duplicates/a.yaml")]
    assert [str(p) for p in problems] == [
        f"{MANIFESTS / 'duplicates/b.yaml'}[0]: metadata.name: "
        f"receiver default/web-up is already declared in {MANIFESTS / 'duplicates/a.yaml'}"
    ]


def test_folders_are_read_recursively_and_hidden_entries_skipped(tmp_path: Path, drivers: DriverSet) -> None:
    (tmp_path / "team" / "..data").mkdir(parents=True)
    (tmp_path / "team" / "up.yml").write_text((MANIFESTS / "duplicates/a.yaml").read_text())
    (tmp_path / "team" / "..data" / "up.yml").write_text((MANIFESTS / "duplicates/a.yaml").read_text())
    (tmp_path / "notes.txt").write_text("not a manifest")
    receivers, problems = load_paths([tmp_path], drivers)
    assert (len(receivers), problems) == (1, [])


def test_a_missing_path_is_a_problem(tmp_path: Path, drivers: DriverSet) -> None:
    receivers, problems = load_paths([tmp_path / "nowhere"], drivers)
    assert receivers == []
    assert [str(p) for p in problems] == [f"{tmp_path / 'nowhere'}: no such file or folder"]
