"""Failover after a hard kill: two real ``webhook-service operator`` replicas with a 3-second Lease;
the leader is killed with SIGKILL while hits keep arriving at both. The other replica takes the
Lease once it has gone unrenewed for its duration, folds what the dead leader left and what arrives
meanwhile, and every accepted hit is applied exactly once: no hit lost, none doubled.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import kopf
import pytest

from controller.kube.client import LEASES, KubeClient
from controller.operator.leader import LEASE_NAME
from tests.kubeemu import KubeEmulator
from tests.test_e2e_operator import Replica, cattle, namespaces, scale, until, web_up_token

pytestmark = pytest.mark.e2e

__all__ = ["cattle", "namespaces"]  # the fixtures, imported for pytest

LEASE = 3.0  # seconds: --leader-lease, so the failover fits in a test


async def holder(client: KubeClient) -> str:
    lease = await client.get(LEASES.named(LEASE_NAME, "webhook-service"))
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.mark.usefixtures("namespaces")
async def test_after_the_leader_is_killed_the_other_replica_folds_every_accepted_hit_once(
    kube: KubeEmulator, kubeconfig: Path, cattle: str, tmp_path: Path
) -> None:
    flags = ("--leader-lease", str(LEASE))
    replicas = {
        name: Replica(tmp_path, kubeconfig, cattle, name, *flags) for name in ("replica-1", "replica-2")
    }
    client = KubeClient.from_connection(kopf.ConnectionInfo(server=str(kube.url).rstrip("/")))
    try:
        async with aiohttp.ClientSession() as session:
            for replica in replicas.values():
                replica.start()
            for replica in replicas.values():
                await replica.ready(session)
            key = await web_up_token(client)
            leader_name = await until(lambda: holder(client), 30, "a leader")
            leader = replicas[leader_name]
            [survivor] = [r for name, r in replicas.items() if name != leader_name]
            before = await scale(session, cattle)
            accepted = 0

            async def fire(replica: Replica, i: int) -> None:
                nonlocal accepted
                headers = {"Idempotency-Key": f"{replica.name}-{i}"}
                try:
                    async with session.post(replica.endpoint, params={"key": key}, headers=headers) as answer:
                        accepted += answer.status == 200
                except aiohttp.ClientError:
                    pass  # the killed replica: not accepted, so it must not be applied either

            async def load(rounds: range) -> None:
                for i in rounds:
                    await asyncio.gather(fire(leader, i), fire(survivor, i))
                    await asyncio.sleep(0.02)

            await load(range(10))
            assert leader.proc is not None
            leader.proc.kill()  # SIGKILL: no release of the Lease, whatever it was doing
            killed_at = time.monotonic()
            await load(range(10, 20))

            async def taken_over() -> bool:
                return await holder(client) == survivor.name

            await until(taken_over, LEASE * 3, "the survivor holding the Lease")
            failover = time.monotonic() - killed_at

            async def applied() -> bool:
                return await scale(session, cattle) == before + accepted

            try:
                await until(applied, 30, f"{accepted} accepted hits applied")
            except AssertionError:
                final = await scale(session, cattle)
                raise AssertionError(
                    f"scale {before} -> {final}, {accepted} accepted\n{survivor.output()}"
                ) from None
            await asyncio.sleep(1.0)
            assert await scale(session, cattle) == before + accepted  # and nothing more afterwards
            assert accepted >= 20  # the leader's 10 before the kill and the survivor's 20
            # Taken once the Lease went unrenewed for its duration, within a few retry periods after.
            assert failover < LEASE * 2, f"failover took {failover:.1f}s"
    finally:
        for replica in replicas.values():
            await replica.terminate()
        await client.close()
