"""Mirroring IntentLedgers into Receiver status: each receiver's last hit, its target's scale and health.

An accepted hit, recorded by any replica, shows up in the active replica as a change of its target's
IntentLedger. Under a burst of hits a ledger changes once per hit, so the mirror is coalesced per
receiver: the first change starts a task that waits ``delay`` seconds and writes the newest ledger
seen meanwhile, so a receiver's status is written once per ``delay``, not once per hit. A ledger
change that alters nothing a receiver's status shows (another receiver's hit, a receiver long gone)
costs no API call. A failed hit is also posted as one Warning Event.

TargetReachable (and Ready, which includes it) is stamped with the generation status says was
handled (``status.observedGeneration``): the hit was accepted on that generation's token and target,
while ``metadata.generation`` may already name an edit the handlers have not seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from controller.kube.client import KubeClient, KubeObject
from controller.kube.errors import KubeError
from controller.operator.receiver_status import (
    TARGET_ERROR,
    not_ready_for_another_reason,
    now_rfc3339,
    post_event,
    ready_from_reachable,
    set_condition,
    update_status,
)
from controller.store import ledger as ledgers
from controller.store.base import HitRecord

logger = logging.getLogger(__name__)

MIRROR_DELAY = 0.25  # seconds a receiver's status lags its ledger, at most, under a burst of hits


class StatusMirror:
    def __init__(self, client: KubeClient, *, delay: float = MIRROR_DELAY) -> None:
        self._client = client
        self._delay = delay
        self._pending: dict[str, ledgers.Ledger] = {}  # receiver -> the newest ledger not yet written
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, str] = {}  # receiver -> the failed hit last reported as an Event
        self._shown: dict[str, tuple[Any, ...]] = {}  # receiver -> what was last mirrored to its status

    def ledger_changed(self, led: ledgers.Ledger) -> None:
        """Schedule the status of every receiver whose view of ``led`` changed."""
        for key, entry in led["receivers"].items():
            shown = (entry.get("lastHit"), led["desired"], led["observed"], led["lastError"])
            if self._shown.get(key) == shown:
                continue
            self._shown[key] = shown
            self._pending[key] = led
            if key not in self._tasks:
                self._tasks[key] = asyncio.create_task(self._mirror(key), name=f"status {key}")

    async def drain(self) -> None:
        """Wait until every status scheduled so far is written (or has failed and been logged)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _mirror(self, key: str) -> None:
        namespace, _sep, name = key.partition("/")
        try:
            while key in self._pending:
                await asyncio.sleep(self._delay)
                led = self._pending.pop(key)
                hit = ledgers.last_hits(led).get(key)
                if hit is None:
                    continue
                try:
                    receiver = await update_status(self._client, namespace, name, ledger_view(led, hit))
                except KubeError as e:
                    logger.warning("could not update the status of %s: %s", key, e)
                    self._shown.pop(key, None)  # so the next ledger event tries again
                    continue
                if (
                    receiver is not None
                    and hit.intent_state == "failed"
                    and self._failed.get(key) != hit.hit_id
                ):
                    self._failed[key] = hit.hit_id
                    message = f"hit {hit.hit_id} failed on {led['target']}: {hit.reason}"
                    await post_event(self._client, receiver, "Warning", "HitFailed", message)
        finally:
            # No await between the loop's last check and this: a new ledger can't slip in between.
            self._tasks.pop(key, None)


def ledger_view(led: ledgers.Ledger, hit: HitRecord) -> Callable[[KubeObject, dict[str, Any]], None]:
    """What the ledger tells a receiver's status: its last hit, the scale, the target's health."""

    def change(_: KubeObject, status: dict[str, Any]) -> None:
        if status.get("target") != led["target"]:
            return  # the receiver has moved to another target since
        generation = int(status.get("observedGeneration") or 0)
        previous = status.get("lastHit") or {}
        if previous.get("hit", "") > hit.hit_id:
            return  # another target's ledger (before a target change) must not roll it back
        last_hit = {"time": now_rfc3339(hit.received_at), "outcome": hit.outcome, "hit": hit.hit_id}
        if hit.intent_state == "failed" and hit.reason:
            last_hit["error"] = hit.reason
        status["lastHit"] = last_hit
        status["scale"] = {"desired": led["desired"], "observed": led["observed"]}
        if led["lastError"]:
            set_condition(status, "TargetReachable", "False", TARGET_ERROR, led["lastError"], generation)
        elif led["observed"] is not None:
            message = f"{led['target']} at scale {led['observed']}"
            set_condition(status, "TargetReachable", "True", "Reconciled", message, generation)
        if not not_ready_for_another_reason(status):
            ready_from_reachable(status, generation)

    return change
