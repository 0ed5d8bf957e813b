"""Granting a Receiver its trigger URL in operator mode: the spec checked, the token's Secret kept,
the outcome shown in status and Events.

``grant`` runs for every create, update and resume. The API server has checked the schema; the
driver's checks run here. An invalid spec gets Ready=False with the problems, and no token. A valid
one gets its token (``TriggerSecrets``), then status: the Secret's name and the token's id — which
every replica's informer reads to accept hits (``controller.operator.informer``) — the target, the
action (the driver's words), and Ready, which is False with the reason when the driver's
``TargetGate`` refuses the target for now (``controller.drivers.contract``) or the target is not
reachable. The URL never goes into status, which more people may read than Secrets.

A Receiver whose Secret name is held by a Secret the operator did not write for it
(``SecretNameTaken``) gets no token: TokenIssued and Ready False, and one Warning Event when that
starts, not one per resync.

``recheck`` is the periodic resync: it wakes the target's reconcile and tells whether the Receiver
must be granted again — a refusal came or went since status last said, or its Secret's name was
taken and may have been freed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from controller.drivers.base import DriverContext
from controller.drivers.contract import DriverSet, GateRefusal
from controller.kube.client import KubeClient, KubeObject
from controller.model import Receiver
from controller.operator.receiver_status import (
    INVALID_SPEC,
    SECRET_NAME_TAKEN,
    condition,
    post_event,
    ready_from_reachable,
    refusal_shown,
    set_condition,
    update_status,
)
from controller.operator.trigger_secrets import SecretNameTaken, TriggerSecrets, TriggerToken, secret_name
from controller.receivers.loader import check_object
from controller.receivers.schema import ReceiverSchema

logger = logging.getLogger(__name__)

StatusChange = Callable[[KubeObject, dict[str, Any]], None]


class ReceiverGrants:
    def __init__(
        self,
        client: KubeClient,
        secrets: TriggerSecrets,
        drivers: DriverSet,
        schema: ReceiverSchema,
        *,
        wake: Callable[[str], None],
    ) -> None:
        self._client = client
        self._secrets = secrets
        self._drivers = drivers
        self._schema = schema
        self._wake = wake

    async def grant(self, obj: KubeObject) -> None:
        meta = obj["metadata"]
        namespace, name, generation = meta["namespace"], meta["name"], int(meta.get("generation") or 0)
        receiver, problems = check_object(obj, self._drivers, self._schema)
        if receiver is None:
            message = "; ".join(
                str(p).removeprefix("<input>: ").removeprefix("kubernetes[0]: ") for p in problems
            )
            await update_status(self._client, namespace, name, _invalid(message, generation))
            await post_event(self._client, obj, "Warning", INVALID_SPEC, message)
            logger.warning("receiver %s/%s is invalid: %s", namespace, name, message)
            return

        try:
            token = await self._secrets.ensure(receiver, meta["uid"])
        except SecretNameTaken as e:
            await self._name_taken(obj, str(e), generation)
            return
        refusal = await self._refusal(receiver)
        action = self._drivers[receiver.driver].action(receiver.spec)
        await update_status(
            self._client, namespace, name, _granted(receiver, token, action, refusal, generation)
        )
        if token.minted:
            message = f"trigger URL written to Secret {secret_name(name)} (token {token.jti})"
            await post_event(self._client, obj, "Normal", "TokenIssued", message)
        if refusal is not None:
            await post_event(self._client, obj, "Warning", refusal.reason, refusal.message)

    async def recheck(self, obj: KubeObject) -> bool:
        """Wake the Receiver's target; whether it must be granted again (a refusal came or went)."""
        receiver, _problems = check_object(obj, self._drivers, self._schema)
        if receiver is None:
            return False
        self._wake(receiver.target.id)
        if _secret_name_taken(obj.get("status") or {}):
            return True
        refused_before = refusal_shown(obj.get("status") or {}) is not None
        refused_now = (await self._refusal(receiver)) is not None
        return refused_now != refused_before

    async def _name_taken(self, obj: KubeObject, message: str, generation: int) -> None:
        meta = obj["metadata"]
        already_shown = _secret_name_taken(obj.get("status") or {})
        await update_status(self._client, meta["namespace"], meta["name"], _taken(message, generation))
        if not already_shown:
            await post_event(self._client, obj, "Warning", SECRET_NAME_TAKEN, message)
            logger.warning("receiver %s/%s: %s", meta["namespace"], meta["name"], message)

    async def _refusal(self, receiver: Receiver) -> GateRefusal | None:
        gate = self._drivers.gates.get(receiver.driver)
        if gate is None:
            return None
        return await gate.refusal(receiver.target, DriverContext(cattle=None, kube=self._client))


def _invalid(message: str, generation: int) -> StatusChange:
    def change(_: KubeObject, status: dict[str, Any]) -> None:
        status.update(observedGeneration=generation, problems=[message], tokenId=None)
        set_condition(status, "Ready", "False", INVALID_SPEC, message, generation)
        set_condition(
            status, "TokenIssued", "False", INVALID_SPEC, "no token for an invalid spec", generation
        )

    return change


def _taken(message: str, generation: int) -> StatusChange:
    def change(_: KubeObject, status: dict[str, Any]) -> None:
        status.pop("problems", None)
        status.update(observedGeneration=generation, tokenId=None)
        set_condition(status, "Ready", "False", SECRET_NAME_TAKEN, message, generation)
        set_condition(status, "TokenIssued", "False", SECRET_NAME_TAKEN, message, generation)

    return change


def _secret_name_taken(status: dict[str, Any]) -> bool:
    issued = condition(status, "TokenIssued")
    return issued is not None and issued["reason"] == SECRET_NAME_TAKEN


def _granted(
    receiver: Receiver, token: TriggerToken, action: str, refusal: GateRefusal | None, generation: int
) -> StatusChange:
    secret = secret_name(receiver.name)

    def change(_: KubeObject, status: dict[str, Any]) -> None:
        status.pop("problems", None)
        retargeted = status.get("target") != receiver.target.id
        status.update(
            observedGeneration=generation,
            secretName=secret,
            tokenId=token.jti,
            tokenKid=token.kid,
            target=receiver.target.id,
            action=action,
        )
        issued = "TokenIssued" if token.minted else "TokenCurrent"
        set_condition(status, "TokenIssued", "True", issued, f"trigger URL in Secret {secret}", generation)
        if retargeted or condition(status, "TargetReachable") is None:
            # What was known of the previous target says nothing of this one.
            set_condition(
                status, "TargetReachable", "Unknown", "NotYetReconciled", "no hit folded yet", generation
            )
        if refusal is not None:
            set_condition(status, "Ready", "False", refusal.reason, refusal.message, generation)
        else:
            ready_from_reachable(status, generation)

    return change
