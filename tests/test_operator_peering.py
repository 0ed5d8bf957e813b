"""Whether this replica is the active one by kopf's peering: kopf's rule applied to the peering's status,
for the work of ours that kopf does not pause (the resync over all Receivers)."""

from __future__ import annotations

from datetime import UTC, datetime

from controller.kube.client import KubeClient
from controller.operator.peering import CLUSTER_PEERINGS, PeeringCheck, is_active
from tests.kubeemu import KubeEmulator
from tests.test_kubeemu import client as client  # a fixture

NOW = 1_800_000_000.0


def peer(priority: int, *, seen_ago: float = 1.0, lifetime: int = 60) -> dict[str, object]:
    lastseen = datetime.fromtimestamp(NOW - seen_ago, tz=UTC).isoformat()
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen}


def test_the_replica_with_the_highest_priority_is_active() -> None:
    peers = {"me": peer(20), "other": peer(10)}
    assert is_active(peers, "me", 20, NOW)
    assert not is_active(peers, "other", 10, NOW)


def test_a_dead_peer_with_a_higher_priority_does_not_count() -> None:
    assert is_active({"me": peer(10), "gone": peer(20, seen_ago=61)}, "me", 10, NOW)


def test_two_replicas_of_the_same_priority_are_both_paused_as_kopf_does() -> None:
    assert not is_active({"me": peer(10), "twin": peer(10)}, "me", 10, NOW)


def test_a_replica_alone_is_active_before_it_appears_in_the_peering() -> None:
    assert is_active({}, "me", 10, NOW)


async def test_the_check_reads_the_peering_object(client: KubeClient, kube: KubeEmulator) -> None:
    await client.patch(CLUSTER_PEERINGS.named("webhook-service"), {"status": {"other": peer(30)}})
    lower = PeeringCheck(client, "webhook-service", identity="me", priority=20, clock=lambda: NOW)
    higher = PeeringCheck(client, "webhook-service", identity="me", priority=40, clock=lambda: NOW)
    assert (await lower.active(), await higher.active()) == (False, True)


async def test_without_the_peering_object_no_replica_is_active(client: KubeClient) -> None:
    check = PeeringCheck(client, "absent", identity="me", priority=20, clock=lambda: NOW)
    assert not await check.active()
