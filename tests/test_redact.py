"""Credentials inside URLs are masked wherever a URL is logged, stored or shown: ``mask_url``, the
settings log line, the Cattle label the service stores, and ``status``."""

from __future__ import annotations

import pytest

from controller.cattle.endpoint import configured_endpoint
from controller.drivers import load_drivers
from controller.redact import mask_url
from controller.settings import Settings
from controller.status_report import render, snapshot_view
from controller.store.base import StoreStatus
from controller.store.sqlite_snapshot import Snapshot

CATTLE = "http://ak:s3cret@rancher.example:8080/v2-beta"
MASKED = "http://****:****@rancher.example:8080/v2-beta"


def test_user_and_password_are_masked_and_the_rest_is_kept() -> None:
    assert mask_url(CATTLE) == MASKED


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://ak@rancher/v1", "https://****@rancher/v1"),
        ("http://ak:@rancher/v1", "http://****:****@rancher/v1"),
        ("http://a:p@ss@rancher/v1", "http://****:****@rancher/v1"),  # the host follows the last @
        ("http://u:p@[::1]:8080/v2-beta", "http://****:****@[::1]:8080/v2-beta"),
        ("http://rancher/v1?q=a@b", "http://rancher/v1?q=a@b"),  # an @ after the host is not userinfo
    ],
)
def test_userinfo_in_every_shape_is_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_query_values_named_like_secrets_are_masked() -> None:
    url = "https://host/v2?access_key=AK&page=2&token=T&secretKey=S&password=P&key=K#top"
    assert mask_url(url) == (
        "https://host/v2?access_key=****&page=2&token=****&secretKey=****&password=****&key=****#top"
    )


@pytest.mark.parametrize(
    "text",
    [
        "sandbox",
        "http://rancher:8080/v2-beta",
        "SANDBOX (emulated in-process at http://127.0.0.1:1234/v2-beta, not Rancher)",
        "https://host/v2?page=2&token=",
        "",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert mask_url(text) == text


def test_masking_twice_changes_nothing_more() -> None:
    assert mask_url(mask_url(CATTLE)) == MASKED


def test_the_settings_log_line_masks_credentials_in_the_cattle_url() -> None:
    described = Settings(cattle_url=CATTLE, public_url="https://u:pw@hooks.example.com").describe()
    assert described["cattle_url"] == MASKED
    assert described["public_url"] == "https://****:****@hooks.example.com"
    assert "s3cret" not in str(described)


def test_the_cattle_label_masks_credentials_and_the_url_keeps_them() -> None:
    endpoint = configured_endpoint(Settings(cattle_url=CATTLE + "/"))
    assert endpoint is not None
    assert endpoint.label == MASKED  # what run_service stores and --print-urls prints
    assert endpoint.url == CATTLE  # what the client uses


def test_status_masks_a_label_stored_by_an_older_version() -> None:
    empty = StoreStatus(targets=[], pending={}, last_hits={}, recent_hits=[], history={}, latest_intents={})
    snapshot = Snapshot(tokens=[], status=empty, problems=[], meta={"cattle": CATTLE})
    shown = render(snapshot_view(snapshot, load_drivers(), 0.0), "text")
    assert shown.splitlines()[0] == f"Cattle: {MASKED}"
    assert "s3cret" not in shown
