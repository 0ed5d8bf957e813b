"""The forwardPost driver's checks, targets and refusals, its port spelt both ways, and which headers a
pass-through hands on (its forwarding is in test_listener_forward)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.drivers import load_drivers
from controller.drivers.contract import Forwarder, forwarded_headers
from controller.drivers.forward_post import DRIVER
from controller.manifest import ReceiverSpec
from controller.receivers.loader import FileLoad, load_bytes
from controller.receivers.schema import ReceiverSchema
from tests.specs import receiver_spec

TOKEN = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJkZWZhdWx0L3JlbGF5In0.c2lnbmF0dXJl"  # shaped like a trigger token


def spec(port: int | str = 8080, path: str | None = "/hooks", secret: str | None = None) -> ReceiverSpec:
    config: dict[str, Any] = {"projectId": "1a5", "serviceName": "web", "port": port}
    if path is not None:
        config["path"] = path
    result = receiver_spec("forwardPost", config)
    if secret is not None:
        result["cattleSecretRef"] = {"name": secret}
    return result


def test_the_driver_is_loaded_and_is_a_forwarder() -> None:
    driver = load_drivers()["forwardPost"]
    assert driver.config_field == "forwardPostConfig"
    assert isinstance(driver, Forwarder)


def test_a_good_spec_has_no_problems() -> None:
    assert DRIVER.check(spec()) == []
    assert DRIVER.check(spec(path=None)) == []


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_a_port_outside_1_to_65535_is_a_problem(port: int) -> None:
    [problem] = DRIVER.check(spec(port=port))
    assert problem.path == "spec.forwardPostConfig.port"


@pytest.mark.parametrize("path", ["hooks", "", "/a?b=1", "/a#frag"])
def test_a_path_not_starting_with_slash_or_holding_a_query_is_a_problem(path: str) -> None:
    [problem] = DRIVER.check(spec(path=path))
    assert problem.path == "spec.forwardPostConfig.path"


def test_the_target_names_project_service_and_port() -> None:
    target = DRIVER.target(spec(), "default")
    assert (target.id, target.project_id) == ("forwardPost:1a5/web:8080", "1a5")


@pytest.mark.parametrize("secret", [None, "cattle-b"])
def test_a_target_round_trips_through_its_key(secret: str | None) -> None:
    target = DRIVER.target(spec(secret=secret), "shop")
    assert DRIVER.target_from_key(target.key) == target


def test_it_acts_only_by_forwarding_so_nothing_of_it_is_ever_recorded() -> None:
    drivers = load_drivers()
    assert "forwardPost" in drivers.forwarders
    assert "forwardPost" not in drivers.scalers and "forwardPost" not in drivers.appliers


# -- port: an integer, or a string of digits as the Rancher Pipeline sends it


def load_relay(port: str) -> FileLoad:
    manifest = (
        "apiVersion: webhook-service.dev/v1\nkind: Receiver\nmetadata: {name: relay}\nspec:\n"
        f"  driver: forwardPost\n  forwardPostConfig: {{projectId: 1a5, serviceName: web, port: {port}}}\n"
    )
    return load_bytes(Path("relay.yaml"), manifest.encode(), load_drivers(), ReceiverSchema.load())


@pytest.mark.parametrize("port", ["60080", '"60080"'])
def test_the_loader_takes_the_port_as_an_integer_or_a_string_of_digits(port: str) -> None:
    loaded = load_relay(port)
    assert loaded.problems == []
    [receiver] = loaded.receivers
    assert receiver.target.key == "1a5/web:60080"


@pytest.mark.parametrize(
    ("port", "got"),
    [('"http"', "'http'"), ('"80 "', "'80 '"), ('"-1"', "'-1'"), ("80.5", "80.5"), ("0", "0")],
)
def test_a_port_that_is_neither_an_integer_nor_digits_is_one_plain_schema_problem(
    port: str, got: str
) -> None:
    [problem] = load_relay(port).problems
    assert (problem.path, problem.message) == (
        "spec.forwardPostConfig.port",
        f"must be an integer (at least 1, at most 65535) or a string (matching ^[0-9]{{1,5}}$) (got {got})",
    )


@pytest.mark.parametrize("port", ["0", "65536"])
def test_a_port_string_outside_1_to_65535_is_a_problem(port: str) -> None:
    [problem] = DRIVER.check(spec(port=port))
    assert (problem.path, problem.message) == (
        "spec.forwardPostConfig.port",
        f"port {port} is not in 1..65535",
    )


def test_both_spellings_of_a_port_name_one_target() -> None:
    assert DRIVER.target(spec(port="8080"), "default") == DRIVER.target(spec(port=8080), "default")


# -- the headers a pass-through hands on


def test_a_senders_own_headers_are_handed_on_in_order_with_repeats() -> None:
    sent = [("X-GitHub-Event", "push"), ("X-Hub-Signature", "sha1=ab"), ("Via", "1.1 a"), ("Via", "1.1 b")]
    assert forwarded_headers(sent, TOKEN) == sent


@pytest.mark.parametrize(
    "name",
    ["Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
     "Transfer-Encoding", "Upgrade"],
)  # fmt: skip
def test_hop_by_hop_headers_stay_behind(name: str) -> None:
    assert forwarded_headers([(name, "x"), ("X-GitHub-Event", "push")], TOKEN) == [("X-GitHub-Event", "push")]


def test_headers_named_by_connection_stay_behind() -> None:
    sent = [("Connection", "keep-alive, X-Trace"), ("x-trace", "1"), ("X-GitHub-Event", "push")]
    assert forwarded_headers(sent, TOKEN) == [("X-GitHub-Event", "push")]


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "Authorization",
        "Content-Length",
        "Content-Type",
        "Content-Encoding",
        "Accept-Encoding",
        "Expect",
    ],
)
def test_the_listeners_own_headers_stay_behind(name: str) -> None:
    # Content-Type travels as the hit's own field; the body goes on decoded, so its coding does not,
    # and the answer comes back decoded, so the sender's Accept-Encoding does not either.
    assert forwarded_headers([(name, "x"), ("X-GitHub-Event", "push")], TOKEN) == [("X-GitHub-Event", "push")]


def test_a_header_carrying_the_token_stays_behind() -> None:
    sent = [("X-Original-URL", f"/v1-webhooks/endpoint?key={TOKEN}"), ("X-GitHub-Event", "push")]
    assert forwarded_headers(sent, TOKEN) == [("X-GitHub-Event", "push")]
