"""The Receiver CRD is generated from the drivers: the committed file is what they generate, and a
driver joins the schema by being a module (its name in the enum, its config field next to driver)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from controller.drivers import load_drivers
from controller.drivers.base import DriverContext
from controller.drivers.contract import ConfigSchema, DriverSet
from controller.manifest import ReceiverSpec
from controller.model import Problem, ScaleIntent, Target
from controller.receivers.crd import crd_text, openapi_schema, receiver_crd
from controller.receivers.schema import ReceiverSchema

CRD_FILE = Path(__file__).parent.parent / "crds" / "receivers.yaml"


@dataclass
class ScaleQueue:
    """A driver no module ships: it exists only to show what a new driver brings to the CRD."""

    name: str = "scaleQueue"
    config_field: str = "scaleQueueConfig"
    summary: str = "scaleQueue scales a queue's consumers; its settings go in scaleQueueConfig."
    config_schema: ConfigSchema = field(
        default_factory=lambda: {
            "type": "object",
            "description": "Settings of the scaleQueue driver.",
            "required": ["queue"],
            "properties": {"queue": {"type": "string", "description": "The queue's name."}},
        }
    )

    def check(self, spec: ReceiverSpec) -> list[Problem]:
        return []

    def target(self, spec: ReceiverSpec, namespace: str) -> Target:
        return self.target_from_key("q")

    def target_from_key(self, key: str) -> Target:
        return Target(driver=self.name, key=key, project_id=None, claims={})

    def action(self, spec: ReceiverSpec) -> str:
        return "up 1"

    def intent(self, spec: ReceiverSpec) -> ScaleIntent:
        return ScaleIntent(action="up", amount=1, min=0, max=1)

    async def observe(self, target: Target, ctx: DriverContext) -> int:
        return 0

    async def apply(self, target: Target, desired: int, ctx: DriverContext) -> int:
        return desired


def test_the_committed_crd_is_what_the_drivers_generate() -> None:
    # On failure: `make crd` writes the file from controller/receivers/crd_base.yaml and the drivers.
    assert CRD_FILE.read_text() == crd_text(load_drivers().values())


def test_the_crd_command_prints_the_generated_crd() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "controller", "crd"], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == crd_text(load_drivers().values())


def test_every_installed_driver_is_in_the_enum_with_its_config_after_driver() -> None:
    drivers = load_drivers()
    spec = openapi_schema(receiver_crd(drivers.values()))["properties"]["spec"]
    assert spec["properties"]["driver"]["enum"] == sorted(drivers)
    configs = list(spec["properties"])[1 : 1 + len(drivers)]
    assert configs == [drivers[name].config_field for name in sorted(drivers)]


def test_a_new_driver_module_brings_its_name_summary_and_config_schema() -> None:
    drivers = load_drivers().replacing(ScaleQueue())
    spec = openapi_schema(receiver_crd(drivers.values()))["properties"]["spec"]
    assert "scaleQueue" in spec["properties"]["driver"]["enum"]
    assert "scaleQueue scales a queue's consumers" in spec["properties"]["driver"]["description"]
    assert spec["properties"]["scaleQueueConfig"]["required"] == ["queue"]


def test_the_schema_of_a_new_driver_checks_its_config() -> None:
    schema = ReceiverSchema.load(DriverSet([ScaleQueue()]).values())
    document: dict[str, Any] = {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": "q"},
        "spec": {"driver": "scaleQueue", "scaleQueueConfig": {}},
    }
    assert [p.path for p in schema.problems(document)] == ["spec.scaleQueueConfig.queue"]
    assert yaml.safe_load(crd_text([ScaleQueue()]))["kind"] == "CustomResourceDefinition"
