"""The forwardPost driver's checks, targets and refusals (its forwarding is in test_listener_forward)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.drivers import load_drivers
from controller.drivers.contract import Forwarder
from controller.drivers.forward_post import DRIVER
from controller.manifest import ReceiverSpec
from tests.specs import receiver_spec


def spec(port: int = 8080, path: str | None = "/hooks", secret: str | None = None) -> ReceiverSpec:
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
