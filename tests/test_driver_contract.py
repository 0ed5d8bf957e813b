"""The driver set: every installed driver keeps the contract, and one that doesn't is refused at load."""

from __future__ import annotations

import dataclasses

import pytest

from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverContractError, DriverSet, ForwardAnswer, ForwardedHit
from controller.drivers.service_upgrade import ServiceUpgradeDriver
from controller.model import Receiver
from tests.test_crd import ScaleQueue


def test_each_installed_driver_acts_in_exactly_one_way() -> None:
    drivers = load_drivers()
    ways: list[set[str]] = [set(drivers.scalers), set(drivers.appliers), set(drivers.forwarders)]
    assert {name: sum(name in way for way in ways) for name in drivers} == dict.fromkeys(drivers, 1)


def test_the_capabilities_of_the_installed_drivers() -> None:
    drivers = load_drivers()
    assert sorted(drivers.scalers) == ["scaleHost", "scaleService", "scaleWorkload"]
    assert sorted(drivers.appliers) == sorted(drivers.readers) == ["serviceUpgrade"]
    assert sorted(drivers.forwarders) == ["forwardPost"]
    assert sorted(drivers.gates) == ["scaleWorkload"]


@dataclasses.dataclass
class ScalingForwarder(ScaleQueue):
    async def forward(self, receiver: Receiver, hit: ForwardedHit, ctx: DriverContext) -> ForwardAnswer:
        return ForwardAnswer(200, b"", "")


class BlindApplier(ServiceUpgradeDriver):
    """Applies intents but reads no body: where would its intents come from?"""

    decide = None  # type: ignore[assignment]  # a Protocol member set to None is one it lacks


def test_a_driver_that_acts_in_two_ways_is_refused() -> None:
    with pytest.raises(DriverContractError, match=r"exactly one way .* not Scaler and Forwarder"):
        DriverSet([ScalingForwarder()])


def test_a_driver_that_applies_intents_it_cannot_read_is_refused() -> None:
    with pytest.raises(DriverContractError, match="applies intents but reads none"):
        DriverSet([BlindApplier()])


def test_a_driver_that_is_not_a_driver_is_refused() -> None:
    with pytest.raises(DriverContractError, match="lacks part of the Driver protocol"):
        DriverSet([object()])  # type: ignore[list-item]


def test_two_drivers_of_one_name_are_refused() -> None:
    with pytest.raises(DriverContractError, match="two drivers are named scaleQueue"):
        DriverSet([ScaleQueue(), ScaleQueue()])


def test_replacing_a_driver_keeps_the_others() -> None:
    drivers = load_drivers()
    tuned = drivers.replacing(ScaleQueue(name="scaleService"))
    assert sorted(tuned) == sorted(drivers)
    assert isinstance(tuned["scaleService"], ScaleQueue)
