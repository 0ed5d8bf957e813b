"""The scale step the scale drivers share: ``action`` up or down by ``amount``, within ``min``/``max``.

Each scale driver's config holds these four fields next to what names its target; this module is
their schema (with the driver's own words for what is scaled), their check, the intent they make,
and how status shows them.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from controller.model import Problem, ScaleIntent

STEP_FIELDS = ["action", "amount", "min", "max"]


class StepConfig(TypedDict):
    action: Literal["up", "down"]
    amount: int
    min: int
    max: int


def step_properties(*, action: str, amount: str, below: str, above: str) -> dict[str, Any]:
    """The four fields' schemas; the arguments describe them in the driver's words."""
    return {
        "action": {"type": "string", "enum": ["up", "down"], "description": action},
        "amount": {"type": "integer", "minimum": 1, "description": amount},
        "min": {"type": "integer", "minimum": 0, "description": below},
        "max": {"type": "integer", "minimum": 0, "description": f"{above} Must be >= min."},
    }


def check_bounds(config: StepConfig, field: str) -> list[Problem]:
    if config["max"] < config["min"]:
        return [Problem(f"spec.{field}.max", f"max ({config['max']}) must be >= min ({config['min']})")]
    return []


def step_intent(config: StepConfig) -> ScaleIntent:
    return ScaleIntent(action=config["action"], amount=config["amount"], min=config["min"], max=config["max"])


def step_action(config: StepConfig) -> str:
    return f"{config['action']} {config['amount']} (min {config['min']}, max {config['max']})"
