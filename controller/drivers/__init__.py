"""Drivers, one module each. ``load_drivers`` imports every module of this package but the contract's
own (``SUPPORT`` and ``_``-prefixed helpers) and collects its module-level ``DRIVER``: a new driver
joins by adding one module — its config's schema reaches the CRD through ``webhook-service crd``."""

from __future__ import annotations

import importlib
import pkgutil

from controller.drivers.contract import Driver, DriverContractError, DriverSet

SUPPORT = frozenset({"base", "contract"})


def load_drivers() -> DriverSet:
    drivers: list[Driver] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name in SUPPORT or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        driver = getattr(module, "DRIVER", None)
        if driver is None:
            raise DriverContractError(f"driver module {module.__name__} has no DRIVER")
        drivers.append(driver)
    return DriverSet(drivers)
