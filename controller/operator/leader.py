"""Leader election on a ``coordination.k8s.io/v1`` Lease: which replica runs the reconciler.

Every replica records hits; only one may fold and apply them, or two folds can interleave and lose a
step. kopf's peering cannot be that guard: it pauses handlers, not the tasks they started, and a hard
kill is noticed only after its 60 s lifetime. So the replicas elect a leader the way client-go's
``leaderelection`` package does, with its timings and its rules:

- A replica takes the Lease when it is free (no holder) or expired. "Expired" is judged with the
  replica's own monotonic clock, never by comparing ``renewTime`` with local time: a replica notes
  when it last *saw the Lease change*, and it is expired once it has not changed for
  ``leaseDurationSeconds``. Clocks of different nodes need not agree.
- The leader renews every ``retry_period``. Every write is a PUT with the resourceVersion read, so
  of two replicas writing at once one gets 409 and reads again.
- A leader that could not renew for ``renew_deadline`` stops leading at once, before anyone may take
  over (``lease_duration`` > ``renew_deadline``): the gap is when its last writes drain.
- A leader that stops gracefully releases the Lease (empty holder), so a rollout fails over within a
  retry period instead of a lease duration.

``LeaderElector.run`` calls ``on_started``/``on_stopped`` around each term; the caller starts and stops
what only the leader may run. Time and sleep are injected so tests run a failover in milliseconds.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypedDict

from controller.kube.client import LEASES, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound

logger = logging.getLogger(__name__)

LEASE_NAME = "webhook-service-leader"


@dataclass(frozen=True)
class LeaseTimings:
    """client-go's defaults (``LeaseDuration``, ``RenewDeadline``, ``RetryPeriod``), in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @classmethod
    def lasting(cls, lease_duration: float) -> LeaseTimings:
        """client-go's proportions for another duration (2/3 of it to renew, a retry every 2/15), so
        the deadline stays inside the lease and several retries fit in the deadline whatever it is."""
        return cls(lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)


class LeaseSpec(TypedDict, total=False):
    holderIdentity: str
    leaseDurationSeconds: int
    acquireTime: str
    renewTime: str
    leaseTransitions: int


def _micro_time(now: datetime.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # MicroTime, as the API server stores it


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        identity: str,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
        name: str = LEASE_NAME,
        timings: LeaseTimings = LeaseTimings(),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        wall_clock: Callable[[], datetime.datetime] = _utc_now,
    ) -> None:
        self._client = client
        self._ref = LEASES.named(name, namespace)
        self.identity = identity
        self._on_started = on_started
        self._on_stopped = on_stopped
        self._timings = timings
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._observed: LeaseSpec | None = None  # the Lease's spec as last seen
        self._observed_at = 0.0  # when it last changed, by our clock
        self._lease: KubeObject | None = None  # the Lease as last written by us, to release it
        self.leading = False

    async def run(self) -> None:
        """Acquire, lead until renewal fails, and again; until cancelled (then release the Lease)."""
        try:
            while True:
                await self._acquire()
                self.leading = True
                logger.info("%s leads (Lease %s)", self.identity, self._ref.name)
                try:
                    await self._on_started()
                    await self._renew()
                finally:
                    self.leading = False
                    await self._on_stopped()
                logger.warning("%s lost the Lease %s: stopped leading", self.identity, self._ref.name)
        finally:
            await self._release()

    async def _acquire(self) -> None:
        while not await self.try_acquire_or_renew():
            await self._sleep(self._timings.retry_period)

    async def _renew(self) -> None:
        """Renew every retry period; return once renewal has failed for the renew deadline."""
        last_renewed = self._clock()
        while True:
            await self._sleep(self._timings.retry_period)
            if await self.try_acquire_or_renew():
                last_renewed = self._clock()
            elif self._clock() - last_renewed >= self._timings.renew_deadline:
                return

    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's ``tryAcquireOrRenew``: True when this replica holds the Lease now."""
        now = self._clock()
        try:
            lease = await self._client.get(self._ref)
        except KubeNotFound:
            return await self._write(None, self._spec(None))
        except KubeError as e:
            logger.warning("could not read the Lease %s: %s", self._ref.name, e)
            return False
        spec: LeaseSpec = lease.get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = spec, now
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or self._timings.lease_duration
        if holder and holder != self.identity and now < self._observed_at + duration:
            return False  # held by another replica, renewed within its duration
        return await self._write(lease, self._spec(spec))

    def _spec(self, current: LeaseSpec | None) -> LeaseSpec:
        stamp = _micro_time(self._wall_clock())
        spec: LeaseSpec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": math.ceil(self._timings.lease_duration),  # whole seconds: never shorter
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        }
        if current is not None:
            transitions = current.get("leaseTransitions", 0)
            if current.get("holderIdentity") == self.identity:
                spec["acquireTime"] = current.get("acquireTime", stamp)
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    async def _write(self, lease: KubeObject | None, spec: LeaseSpec) -> bool:
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self._ref.name, "namespace": self._ref.namespace},
            "spec": spec,
        }
        try:
            if lease is None:
                written = await self._client.create(self._ref, body)
            else:
                body["metadata"]["resourceVersion"] = lease["metadata"]["resourceVersion"]
                written = await self._client.replace(self._ref, body)
        except KubeConflict:
            return False  # someone else wrote first: read again next round
        except KubeError as e:
            logger.warning("could not write the Lease %s: %s", self._ref.name, e)
            return False
        self._lease = written
        self._observed, self._observed_at = written.get("spec") or {}, self._clock()
        return True

    async def _release(self) -> None:
        """Hand the Lease back on the way out, so another replica need not wait for it to expire."""
        lease = self._lease
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        released: LeaseSpec = {**(lease.get("spec") or {}), "holderIdentity": ""}
        if await self._write(lease, released):
            logger.info("%s released the Lease %s", self.identity, self._ref.name)
