"""Drivers, one module each. ``load_drivers`` imports every module of this package (but ``base``)
and collects its module-level ``DRIVER``: a new driver joins by adding one module, nothing else."""

from __future__ import annotations

import importlib
import pkgutil

from controller.drivers.base import ScaleDriver


def load_drivers() -> dict[str, ScaleDriver]:
    drivers: dict[str, ScaleDriver] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        driver: ScaleDriver = module.DRIVER
        drivers[driver.name] = driver
    return drivers
