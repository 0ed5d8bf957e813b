"""What the operator shows and checks of a receiver's driver: the action in status, and a refusal.

These are the operator's only driver-specific lines, kept together so that they can become
questions the drivers answer themselves without touching the layers that use them.

- ``describe_action``: the step a hit takes, for ``status.action``.
- ``refusal``: why a valid receiver must still refuse hits (Ready=False, ``REFUSAL_REASON``): a
  scaleWorkload target that a HorizontalPodAutoscaler manages, whose scale the HPA would undo.
"""

from __future__ import annotations

from controller.bodies import ReceiverSpec
from controller.drivers.base import ScaleDriver
from controller.drivers.scale_workload import hpa_conflict
from controller.forwarding import Forwarder
from controller.intents import BodyReader
from controller.kube.client import KubeClient
from controller.model import Receiver

REFUSAL_REASON = "HorizontalPodAutoscalerConflict"


def describe_action(driver: ScaleDriver, spec: ReceiverSpec) -> str:
    if isinstance(driver, Forwarder):  # a pass-through has no step to show
        return "forward each hit (synchronous pass-through)"
    if isinstance(driver, BodyReader):  # the step comes from each hit's body
        return "act on what each hit's body says (e.g. upgrade to the pushed image)"
    intent = driver.intent(spec)
    return f"{intent.action} {intent.amount} (min {intent.min}, max {intent.max})"


async def refusal(client: KubeClient, receiver: Receiver) -> str | None:
    """Why hits on the receiver must be refused now (Ready=False, ``REFUSAL_REASON``), or None."""
    if receiver.driver != "scaleWorkload":
        return None
    claims = receiver.target.claims
    return await hpa_conflict(client, claims["namespace"], claims["kind"], claims["name"])
