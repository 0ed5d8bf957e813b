"""The ledger→status mirror against the Kubernetes emulator, with no delay: what a Receiver's status
shows of its target's IntentLedger, and how few API calls that costs."""

from __future__ import annotations

from typing import Any

import pytest

from controller.kube.client import EVENTS, RECEIVERS, KubeClient, KubeObject
from controller.operator.status_mirror import StatusMirror, ledger_view
from controller.store import ledger as ledgers
from controller.store.base import IntentState
from tests.kubeemu import KubeEmulator
from tests.test_kubeemu import client as client  # a fixture

NS = "shop"
TARGET = "scaleService:1a5/1s7"
KEY = f"{NS}/web-up"


def ledger(
    hit: str = "h1",
    *,
    observed: int | None = 3,
    state: IntentState | None = "folded",
    reason: str | None = None,
    error: str | None = None,
    target: str = TARGET,
) -> ledgers.Ledger:
    led = ledgers.new_ledger(target)
    led["desired"], led["observed"], led["lastError"] = observed, observed, error
    led["receivers"][KEY] = {
        "uid": "u1",
        "lastAccepted": 1000.0,
        "idempotency": {},
        "dedupe": {},
        "rate": [],
        "lastHit": {
            "hit": hit,
            "outcome": "accepted",
            "at": 1000.0,
            "reason": reason,
            "state": state,
            "before": None,
            "after": None,
            "clamped": None,
        },
    }
    return led


@pytest.fixture
def receiver(kube: KubeEmulator) -> None:
    """The Receiver web-up, its status already naming the target (as after it was granted)."""
    kube.add_namespaces(NS)
    kube.objects["webhook-service.dev/v1/receivers", NS, "web-up"] = {
        "apiVersion": "webhook-service.dev/v1",
        "kind": "Receiver",
        "metadata": {"name": "web-up", "namespace": NS},
        "spec": {"driver": "scaleService"},
        "status": {"target": TARGET},
    }


@pytest.fixture
def mirror(client: KubeClient, receiver: None) -> StatusMirror:
    return StatusMirror(client, delay=0)


async def status(client: KubeClient) -> dict[str, Any]:
    return dict((await client.get(RECEIVERS.named("web-up", NS))).get("status") or {})


def status_writes(kube: KubeEmulator) -> int:
    return sum(1 for request in kube["patch"] if request.url.path.endswith("/receivers/web-up/status"))


async def test_the_last_hit_and_the_scale_show_in_the_receivers_status(
    mirror: StatusMirror, client: KubeClient
) -> None:
    mirror.ledger_changed(ledger("h1", observed=3))
    await mirror.drain()
    shown = await status(client)
    assert shown["lastHit"] == {"time": "1970-01-01T00:16:40Z", "outcome": "accepted", "hit": "h1"}
    assert shown["scale"] == {"desired": 3, "observed": 3}
    [reachable] = [c for c in shown["conditions"] if c["type"] == "TargetReachable"]
    assert (reachable["status"], reachable["message"]) == ("True", f"{TARGET} at scale 3")


async def test_a_burst_of_ledger_changes_writes_the_status_once_with_the_newest(
    mirror: StatusMirror, client: KubeClient, kube: KubeEmulator
) -> None:
    for n in range(1, 6):
        mirror.ledger_changed(ledger(f"h{n}", observed=n))
    await mirror.drain()
    assert status_writes(kube) == 1
    assert (await status(client))["lastHit"]["hit"] == "h5"


async def test_a_ledger_change_the_status_does_not_show_costs_no_api_call(
    mirror: StatusMirror, kube: KubeEmulator
) -> None:
    mirror.ledger_changed(ledger("h1"))
    await mirror.drain()
    before = len(list(kube))
    mirror.ledger_changed(ledger("h1"))
    await mirror.drain()
    assert len(list(kube)) == before


async def test_a_failed_status_write_is_tried_again_on_the_next_ledger_change(
    mirror: StatusMirror, client: KubeClient, kube: KubeEmulator
) -> None:
    kube["patch"][:1] << 503
    mirror.ledger_changed(ledger("h1"))
    await mirror.drain()
    assert "lastHit" not in await status(client)
    mirror.ledger_changed(ledger("h1"))
    await mirror.drain()
    assert (await status(client))["lastHit"]["hit"] == "h1"


async def test_a_failed_hit_is_posted_as_one_warning_event(mirror: StatusMirror, client: KubeClient) -> None:
    mirror.ledger_changed(ledger("h1", state="failed", reason="Cattle said 500", error="Cattle said 500"))
    await mirror.drain()
    mirror.ledger_changed(ledger("h1", state="failed", reason="Cattle said 500", error="still down"))
    await mirror.drain()
    [event] = await client.list(EVENTS.within(NS))
    assert (event["type"], event["reason"]) == ("Warning", "HitFailed")
    assert event["message"] == f"hit h1 failed on {TARGET}: Cattle said 500"
    assert (await status(client))["lastHit"]["error"] == "Cattle said 500"


def receiver_status(**status: Any) -> tuple[KubeObject, dict[str, Any]]:
    return {"metadata": {"name": "web-up", "namespace": NS, "generation": 2}}, {"target": TARGET, **status}


def test_a_ledger_of_a_target_the_receiver_has_left_changes_nothing() -> None:
    obj, status = receiver_status(target="scaleService:1a5/1s8")
    led = ledger("h2")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    assert status == {"target": "scaleService:1a5/1s8"}


def test_an_older_hit_does_not_roll_the_last_hit_back() -> None:
    obj, status = receiver_status(lastHit={"hit": "h2"})
    led = ledger("h1")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    assert status == {"target": TARGET, "lastHit": {"hit": "h2"}}


def test_a_target_error_makes_the_target_unreachable() -> None:
    obj, status = receiver_status()
    led = ledger("h1", error="Cattle unreachable")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    [reachable] = [c for c in status["conditions"] if c["type"] == "TargetReachable"]
    assert (reachable["type"], reachable["status"], reachable["reason"], reachable["message"]) == (
        "TargetReachable",
        "False",
        "TargetError",
        "Cattle unreachable",
    )


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    return {c["type"]: (c["status"], c["reason"], c["observedGeneration"]) for c in status["conditions"]}


def test_an_unreachable_target_makes_the_receiver_not_ready_with_its_reason() -> None:
    obj, status = receiver_status(observedGeneration=2)
    led = ledger("h1", error="Cattle unreachable")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "False",
        "TargetError",
        "Cattle unreachable",
    )


def test_a_target_reachable_again_makes_the_receiver_ready_again() -> None:
    obj, status = receiver_status(observedGeneration=2)
    failed = ledger("h1", error="Cattle unreachable")
    ledger_view(failed, ledgers.last_hits(failed)[KEY])(obj, status)
    healed = ledger("h2")
    ledger_view(healed, ledgers.last_hits(healed)[KEY])(obj, status)
    assert conditions(status)["Ready"][:2] == ("True", "Ready")


def test_a_receiver_not_ready_for_another_reason_stays_so_whatever_the_target() -> None:
    refused = {
        "type": "Ready",
        "status": "False",
        "reason": "HorizontalPodAutoscalerConflict",
        "observedGeneration": 2,
    }
    obj, status = receiver_status(
        observedGeneration=2, conditions=[{**refused, "message": "an HPA", "lastTransitionTime": "t"}]
    )
    led = ledger("h1")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    assert conditions(status)["Ready"][:2] == ("False", "HorizontalPodAutoscalerConflict")


def test_the_conditions_name_the_generation_handled_not_one_the_handlers_have_yet_to_see() -> None:
    obj, status = receiver_status(observedGeneration=1)  # metadata.generation is 2: an edit not yet handled
    led = ledger("h1")
    ledger_view(led, ledgers.last_hits(led)[KEY])(obj, status)
    assert conditions(status) == {"Ready": ("True", "Ready", 1), "TargetReachable": ("True", "Reconciled", 1)}
