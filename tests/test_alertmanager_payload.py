"""Recognising Alertmanager payloads and naming a notification for dedupe."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from controller.listener.alertmanager import MalformedPayload, dedupe_key, parse_payload

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"alertmanager-0.25-{name}.json").read_text())
    return data


def parsed(data: dict[str, Any]) -> Any:
    payload = parse_payload(data)
    assert payload is not None
    return payload


def test_the_firing_fixture_is_an_alertmanager_payload() -> None:
    assert parsed(load("firing"))["status"] == "firing"


def test_a_body_without_version_4_is_not_alertmanager() -> None:
    assert parse_payload({"status": "firing", "alerts": []}) is None


def test_a_json_array_is_not_alertmanager() -> None:
    assert parse_payload([{"version": "4"}]) is None


@pytest.mark.parametrize(
    "change",
    [
        {"status": 1},
        {"alerts": {}},
        {"alerts": ["x"]},
        {"groupKey": 3},
        {"alerts": [{"fingerprint": 5}]},
        {"alerts": [{"labels": {"a": 1}}]},
    ],
)
def test_a_version_4_payload_with_the_wrong_shape_is_malformed(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedPayload):
        parse_payload({**load("firing"), **change})


def test_a_version_4_payload_without_alerts_is_malformed() -> None:
    data = load("firing")
    del data["alerts"]
    with pytest.raises(MalformedPayload):
        parse_payload(data)


def test_the_same_notification_has_the_same_dedupe_key() -> None:
    assert dedupe_key(parsed(load("firing"))) == dedupe_key(parsed(load("firing")))


def test_firing_and_resolved_have_different_dedupe_keys() -> None:
    assert dedupe_key(parsed(load("firing"))) != dedupe_key(parsed(load("resolved")))


def test_the_dedupe_key_is_sha256_hex() -> None:
    key = dedupe_key(parsed(load("firing")))
    assert len(key) == 64 and int(key, 16) >= 0


def test_a_new_firing_of_the_same_alert_has_a_new_dedupe_key() -> None:
    again = load("firing")
    again["alerts"][0]["startsAt"] = "2026-11-28T12:00:00Z"
    assert dedupe_key(parsed(again)) != dedupe_key(parsed(load("firing")))


def test_alert_order_does_not_change_the_dedupe_key() -> None:
    data = load("firing")
    other = copy.deepcopy(data["alerts"][0])
    other["fingerprint"] = "0000000000000001"
    forward = {**data, "alerts": [data["alerts"][0], other]}
    backward = {**data, "alerts": [other, data["alerts"][0]]}
    assert dedupe_key(parsed(forward)) == dedupe_key(parsed(backward))


def test_labels_name_an_alert_without_fingerprint() -> None:
    data = load("firing")
    del data["alerts"][0]["fingerprint"]
    relabelled = copy.deepcopy(data)
    relabelled["alerts"][0]["labels"]["severity"] = "warning"
    assert dedupe_key(parsed(data)) != dedupe_key(parsed(relabelled))


def test_the_group_key_is_part_of_the_dedupe_key() -> None:
    other = {**load("firing"), "groupKey": '{}:{alertname="Other"}'}
    assert dedupe_key(parsed(other)) != dedupe_key(parsed(load("firing")))
