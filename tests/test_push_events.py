"""Registry push bodies (fixtures in tests/fixtures/registry/) and tag patterns, for serviceUpgrade."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from controller.push_events import (
    AddressType,
    MalformedPush,
    Push,
    TagPattern,
    image_repository,
    parse_pushes,
)

FIXTURES = Path(__file__).parent / "fixtures" / "registry"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_a_docker_hub_push_names_the_repository_and_tag() -> None:
    assert parse_pushes("dockerhub", fixture("dockerhub-push.json")) == [
        Push("docker.io", "acme/web", "v1.4.2")
    ]


def test_an_alibaba_push_names_its_regional_registry() -> None:
    [push] = parse_pushes("alicloud", fixture("alicloud-push.json"))
    assert push == Push("registry.cn-hangzhou.aliyuncs.com", "acme/web", "v1.4.2")
    assert push.image == "registry.cn-hangzhou.aliyuncs.com/acme/web:v1.4.2"


@pytest.mark.parametrize(
    ("address_type", "registry"),
    [
        ("registry", "registry.cn-hangzhou.aliyuncs.com"),
        ("registry-internal", "registry-internal.cn-hangzhou.aliyuncs.com"),
        ("registry-vpc", "registry-vpc.cn-hangzhou.aliyuncs.com"),
    ],
)
def test_an_alibaba_push_names_the_endpoint_of_its_address_type(
    address_type: AddressType, registry: str
) -> None:
    [push] = parse_pushes("alicloud", fixture("alicloud-push.json"), address_type=address_type)
    assert push == Push(registry, "acme/web", "v1.4.2")


def test_an_azure_push_names_its_registry_host() -> None:
    assert parse_pushes("azure", fixture("azure-push.json")) == [
        Push("acme.azurecr.io", "acme/web", "v1.4.2")
    ]


def test_an_azure_event_other_than_push_reports_no_push() -> None:
    assert parse_pushes("azure", {**fixture("azure-push.json"), "action": "delete"}) == []


def test_a_registry_envelope_yields_its_tagged_manifest_pushes_only() -> None:
    pushes = parse_pushes("registry", fixture("registry-v2-envelope.json"))
    assert pushes == [Push("registry.acme.example:5000", "acme/web", "v1.4.2")]


def test_a_registry_envelope_without_events_is_malformed() -> None:
    with pytest.raises(MalformedPush) as e:
        parse_pushes("registry", {"event": []})
    assert e.value.field == "events"


def test_a_missing_field_is_named() -> None:
    body = fixture("dockerhub-push.json")
    del body["push_data"]["tag"]
    with pytest.raises(MalformedPush) as e:
        parse_pushes("dockerhub", body)
    assert e.value.field == "push_data.tag"


def test_a_broken_event_in_an_envelope_is_named_with_its_index() -> None:
    body = fixture("registry-v2-envelope.json")
    del body["events"][1]["request"]["host"]
    with pytest.raises(MalformedPush) as e:
        parse_pushes("registry", body)
    assert e.value.field == "events[1].request.host"


def test_a_body_that_is_not_an_object_is_malformed() -> None:
    with pytest.raises(MalformedPush):
        parse_pushes("dockerhub", ["not", "an", "object"])


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("docker:nginx:1.13", ("docker.io", "library/nginx", "1.13")),
        ("docker:acme/web:1.3", ("docker.io", "acme/web", "1.3")),
        ("docker:index.docker.io/acme/web", ("docker.io", "acme/web", None)),
        ("docker:registry.acme.example:5000/acme/web:v1", ("registry.acme.example:5000", "acme/web", "v1")),
        ("docker:localhost/web:dev", ("localhost", "web", "dev")),
        ("docker:acme.azurecr.io/acme/web@sha256:abc", ("acme.azurecr.io", "acme/web", None)),
    ],
)
def test_image_uuids_are_normalised_for_comparison(image: str, expected: tuple[str, str, str | None]) -> None:
    assert image_repository(image) == expected


def test_an_official_image_push_matches_its_short_name() -> None:
    [push] = parse_pushes("dockerhub", {"push_data": {"tag": "1.25"}, "repository": {"repo_name": "nginx"}})
    assert (push.registry, push.repository) == image_repository("docker:nginx:1.13")[:2]


@pytest.mark.parametrize(
    ("pattern", "tag", "wanted"),
    [
        ("v1.4.2", "v1.4.2", True),
        ("v1.4.2", "v1.4.3", False),
        ("v1.*", "v1.4.2", True),
        ("v1.*", "v2.0.0", False),
        ("release-?", "release-7", True),
        ("regex:v1\\.[0-9]+\\.[0-9]+", "v1.4.2", True),
        ("regex:v1\\.[0-9]+", "v1.4.2", False),  # the whole tag must match
        ("regex:^(main|master)$", "main", True),
    ],
)
def test_tag_patterns(pattern: str, tag: str, wanted: bool) -> None:
    assert TagPattern(pattern).matches(tag) is wanted


def test_a_broken_regex_pattern_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid regular expression"):
        TagPattern("regex:v1.(")
