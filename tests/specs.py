"""Receiver specs for tests: a driver's config under its config field, plus the fields every receiver has.

``ReceiverSpec`` declares only the common fields (a driver declares its own config), so a literal
spec with a config would not type-check: tests build specs here and read configs with ``config_of``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from controller.drivers.contract import config_of
from controller.manifest import ReceiverSpec

__all__ = ["config_of", "receiver_spec"]


def receiver_spec(driver: str, config: Mapping[str, Any], **common: Any) -> ReceiverSpec:
    """The spec of a ``driver`` receiver with ``config`` in ``<driver>Config`` and ``common`` fields."""
    return cast(ReceiverSpec, {"driver": driver, f"{driver}Config": dict(config), **common})
