"""``IntentStore`` on the Kubernetes API: one ``IntentLedger`` object per target.

Why one object per target rather than records in each Receiver's status: the receivers of one
target (an up/down pair) must fold in one order, and idempotency, Alertmanager retries, cooldown
and the rate limit must be decided together with recording the hit. One object per target makes
each of those a single compare-and-swap, exactly as one SQLite transaction does in standalone mode.
Receivers of different targets never contend. The ledgers live in the operator's namespace, so
their contents (idempotency keys, hit history) are visible only to whoever may read that namespace.

Every write is ``PUT`` with the ``resourceVersion`` that was read: if another listener replica (or
the folding replica) wrote in between, the API server answers 409 and the change is computed again
on the fresh object (``_cas``). A hit is acknowledged only after its PUT succeeded, so an accepted
hit is durable in etcd before the listener answers 200. The last object seen is cached per target
to save the read in the common uncontended case; a stale cache costs one 409.

The fold is fenced as well: ``pending_intents`` keeps the ledger it read (per target), and
``commit_fold`` lands only on a ledger whose fold state — desired, observed, converged, last error —
is still the one read, and whose folded intents are all still pending. Hits recorded meanwhile
(409s of the compare-and-swap) do not void a fold: they only append intents, which the next pass
folds. Anything a folder or a converging pass writes does: a deposed leader's late commit, or a fold
computed while another replica's desired value was landing, fails with ``FoldConflict`` and the
reconciler reads again and folds anew. A ledger whose desired value is not yet confirmed is refused
too: the fold starts from the live scale, which need not be that value yet.

Hits of one target arriving together in one process share one write (``_Batch``), as the SQLite
store's group commit does: each hit's outcome is decided in arrival order on the same ledger, and
all of them are answered once that one PUT succeeded. Without it, N concurrent hits on one receiver
would be N writers racing for one resourceVersion, costing O(N²) conflicting requests.

A ledger is bounded (``controller.store.ledger``): a hit over its caps is refused with ``LedgerFull``
(503 with Retry-After), logged once a minute per target rather than once per hit. The size cap is
checked here, on the encoded ledger, once per batch. A ledger with nothing left in it is deleted by
the folding replica's resync (``targets_with_work``), conditionally on the version it read.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

from controller.kube.client import LEDGERS, KubeClient, KubeObject
from controller.kube.errors import KubeConflict, KubeError, KubeNotFound
from controller.store import ledger as ledgers
from controller.store.base import (
    RECENT_HITS,
    FoldConflict,
    FoldStep,
    HitRecord,
    HitRequest,
    HitResult,
    LedgerFull,
    PendingIntent,
    StoreError,
    StoreStatus,
    StoreUnavailable,
    TargetState,
)
from controller.store.ids import HitIds

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
MAX_ATTEMPTS = 40  # compare-and-swap rounds before a hit is answered 503 (replicas hammering one target)
LEDGER_LABEL = "webhook-service.dev/ledger"
FULL_WARNING_INTERVAL = 60.0  # seconds between two warnings that a target's ledger refuses hits


def _record_all(
    led: ledgers.Ledger, requests: list[tuple[HitRequest, str]]
) -> tuple[ledgers.Ledger, list[HitResult | StoreError]]:
    """Decide a batch of hits in arrival order; one hit's error (e.g. rate limited) is its own.

    The ledger is encoded once per batch to check its size; only a batch that would take it over
    ``MAX_LEDGER_BYTES`` is decided again, hit by hit, refusing each hit that would."""
    start = led
    outcomes: list[HitResult | StoreError] = []
    for request, hit_id in requests:
        try:
            led, result = ledgers.record_hit(led, request, hit_id)
            outcomes.append(result)
        except StoreError as e:
            outcomes.append(e)
    if led is start or ledgers.encoded_size(led) <= ledgers.MAX_LEDGER_BYTES:
        return led, outcomes
    led, outcomes = start, []
    for request, hit_id in requests:
        try:
            new, result = ledgers.record_hit(led, request, hit_id)
            if new is not led and ledgers.encoded_size(new) > ledgers.MAX_LEDGER_BYTES:
                raise LedgerFull(f"the ledger of {request.target_id} is at its size limit")
            led = new
            outcomes.append(result)
        except StoreError as e:
            outcomes.append(e)
    return led, outcomes


def _fold_state(led: ledgers.Ledger) -> tuple[int | None, int | None, bool, str | None]:
    """What a fold depends on besides its intents: only a folder or a converging pass changes it."""
    return led["desired"], led["observed"], led["converged"], led["lastError"]


def ledger_name(target_id: str) -> str:
    """A DNS-safe, stable name for a target's ledger (target ids contain ':' and '/')."""
    return "target-" + hashlib.sha256(target_id.encode()).hexdigest()[:24]


# Told, at most once a minute per target, that a receiver's hit was refused because its target's
# ledger is full: the operator posts it as a Warning Event on that Receiver.
FullNotice = Callable[[HitRequest, str], Coroutine[Any, Any, None]]


class KubeStore:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        *,
        clock: Callable[[], float] = time.time,
        on_full: FullNotice | None = None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._clock = clock
        self._cache: dict[str, KubeObject] = {}
        self._fold_reads: dict[str, ledgers.Ledger] = {}  # the ledger each target's next fold is fenced on
        self._hit_ids = HitIds()
        self._open = False
        self._queues: dict[str, list[tuple[HitRequest, str, asyncio.Future[HitResult]]]] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}
        self._full_warned: dict[str, float] = {}  # target -> when its full ledger was last logged
        self._on_full = on_full
        self._notices: set[asyncio.Task[None]] = set()  # notices in flight (kept from the GC)

    async def open(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        await asyncio.gather(*list(self._writers.values()), return_exceptions=True)

    def is_open(self) -> bool:
        return self._open

    def unavailable_reason(self) -> str | None:
        return None if self._open else "the store is closed"

    # -- hits and intents

    async def record_hit(self, request: HitRequest) -> HitResult:
        if not self._open:
            raise StoreUnavailable("the store is closed")
        future: asyncio.Future[HitResult] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(request.target_id, [])
        queue.append((request, self._hit_ids.next(request.received_at), future))
        if request.target_id not in self._writers:
            self._writers[request.target_id] = asyncio.create_task(self._write_hits(request.target_id))
        return await future

    async def _write_hits(self, target_id: str) -> None:
        """Write the target's queued hits, a batch per compare-and-swap, until none is left."""
        try:
            while batch := self._queues.pop(target_id, []):
                requests = [(request, hit_id) for request, hit_id, _future in batch]
                try:
                    # A retry after a 409 decides every hit again, on the fresh ledger.
                    outcomes = await self._cas(target_id, functools.partial(_record_all, requests=requests))
                except StoreError as e:
                    outcomes = [e] * len(batch)
                refused = [
                    (request, e)
                    for request, e in zip(requests, outcomes, strict=True)
                    if isinstance(e, LedgerFull)
                ]
                if refused:
                    self._warn_full(target_id, refused)
                for (_request, _hit_id, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller gave up (cancelled); its hit is recorded anyway
                        continue
                    if isinstance(outcome, StoreError):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            # No await between the loop's last check and this: a new hit can't slip in between.
            self._writers.pop(target_id, None)

    def _warn_full(self, target_id: str, refused: list[tuple[tuple[HitRequest, str], LedgerFull]]) -> None:
        """Log a full ledger, and tell ``on_full``, once a minute per target: every refused hit would
        flood the log and the Events."""
        now = self._clock()
        (request, _hit_id), error = refused[0]
        if now - self._full_warned.get(target_id, -FULL_WARNING_INTERVAL) >= FULL_WARNING_INTERVAL:
            self._full_warned[target_id] = now
            message = f"refusing hits of {target_id} until its pending intents are applied: {error}"
            logger.warning("%s", message)
            if self._on_full is not None:
                task = asyncio.create_task(self._on_full(request, message), name=f"full {target_id}")
                self._notices.add(task)
                task.add_done_callback(self._notices.discard)
        logger.debug("refused %d hits of %s: ledger full", len(refused), target_id)

    async def targets_with_work(self) -> list[str]:
        """Targets with work; deletes, on the way, the ledgers left with nothing (``ledgers.is_empty``).

        Only the folding replica's periodic resync calls it, and it has just read every ledger: a
        ledger's deletion is conditional on the version read, so a hit recorded meanwhile keeps it."""
        now = self._clock()
        work = []
        for obj, led in await self._list_objects():
            if ledgers.has_work(led):
                work.append(led["target"])
            elif ledgers.is_empty(led, now):
                await self._delete_if_unchanged(obj, led["target"])
        return sorted(work)

    async def _delete_if_unchanged(self, obj: KubeObject, target_id: str) -> None:
        self._cache.pop(target_id, None)
        try:
            await self._client.delete(
                LEDGERS.named(obj["metadata"]["name"], self._namespace),
                resource_version=obj["metadata"]["resourceVersion"],
            )
        except (KubeConflict, KubeNotFound):
            return  # written meanwhile (it has work again), or deleted by another replica
        except KubeError as e:
            # Housekeeping: the next resync tries again; the targets with work matter more.
            logger.warning("could not delete the empty ledger of %s: %s", target_id, e)
            return
        logger.info("deleted the ledger of %s: no receiver, nothing pending", target_id)

    async def pending_intents(self, target_id: str) -> list[PendingIntent]:
        led = await self._read(target_id)
        if led is None:
            self._fold_reads.pop(target_id, None)
            return []
        self._fold_reads[target_id] = led
        return ledgers.pending_intents(led)

    async def commit_fold(self, target_id: str, desired: int, steps: Sequence[FoldStep]) -> None:
        now = self._clock()
        read = self._fold_reads.pop(target_id, None)

        def fenced(led: ledgers.Ledger) -> tuple[ledgers.Ledger, None]:
            if read is not None and _fold_state(led) != _fold_state(read):
                raise FoldConflict(
                    f"ledger of {target_id}: another writer folded or converged since the read"
                )
            if led["desired"] is not None and not led["converged"]:
                raise FoldConflict(f"ledger of {target_id}: the fold read an unconfirmed desired value")
            return ledgers.commit_fold(led, desired, steps, now), None

        await self._cas(target_id, fenced)

    async def fail_intents(self, target_id: str, reason: str) -> int:
        now = self._clock()
        return await self._cas(target_id, lambda led: ledgers.fail_intents(led, reason, now))

    async def get_target(self, target_id: str) -> TargetState | None:
        led = await self._read(target_id)
        return None if led is None else ledgers.target_state(led)

    async def set_observed(
        self, target_id: str, observed: int | None, *, converged: bool, error: str | None
    ) -> None:
        now = self._clock()
        await self._cas(
            target_id, lambda led: (ledgers.set_observed(led, observed, converged, error, now), None)
        )

    async def read_status(self) -> StoreStatus:
        listed = await self._list()
        hits: dict[str, HitRecord] = {}
        for led in listed:
            for key, record in ledgers.last_hits(led).items():
                if key not in hits or record.received_at > hits[key].received_at:
                    hits[key] = record
        recent = [record for led in listed for record in ledgers.recent_hits(led)]
        recent.sort(key=lambda r: (r.received_at, r.hit_id), reverse=True)
        return StoreStatus(
            targets=[ledgers.target_state(led) for led in listed],
            pending={led["target"]: len(led["pending"]) for led in listed if led["pending"]},
            last_hits=hits,
            recent_hits=recent[:RECENT_HITS],
            history={led["target"]: ledgers.history(led) for led in listed if led["history"]},
            latest_intents={
                led["target"]: led["latestIntent"] for led in listed if led["latestIntent"] is not None
            },
        )

    # -- the compare-and-swap loop: the one place that retries ledger writes

    async def _cas(self, target_id: str, change: Callable[[ledgers.Ledger], tuple[ledgers.Ledger, _T]]) -> _T:
        if not self._open:
            raise StoreUnavailable("the store is closed")
        ref = LEDGERS.named(ledger_name(target_id), self._namespace)
        obj = self._cache.get(target_id)
        for attempt in range(MAX_ATTEMPTS):
            try:
                if obj is None:
                    obj = await self._fetch(target_id)
                current = ledgers.from_json(obj.get("ledger") if obj else None, target_id)
                new, result = change(current)
                if new is current:  # nothing to write (e.g. a duplicate): the read decided it
                    return result
                if obj is None:
                    written = await self._client.create(ref, self._object(target_id, new, None))
                else:
                    written = await self._client.replace(ref, self._object(target_id, new, obj))
                self._cache[target_id] = written
                return result
            except KubeConflict:
                # Another writer came first (stale resourceVersion, or it created the ledger).
                obj = None
                self._cache.pop(target_id, None)
                # Full jitter, growing: writers that collided spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, min(0.25, 0.002 * 2**attempt)))
            except KubeError as e:
                self._cache.pop(target_id, None)
                raise StoreUnavailable(f"ledger of {target_id}: {e}") from e
        raise StoreUnavailable(f"ledger of {target_id}: {MAX_ATTEMPTS} conflicting writes in a row")

    async def _fetch(self, target_id: str) -> KubeObject | None:
        try:
            return await self._client.get(LEDGERS.named(ledger_name(target_id), self._namespace))
        except KubeNotFound:
            return None

    async def _read(self, target_id: str) -> ledgers.Ledger | None:
        try:
            obj = await self._fetch(target_id)
        except KubeError as e:
            raise StoreUnavailable(f"ledger of {target_id}: {e}") from e
        if obj is None:
            return None
        self._cache[target_id] = obj
        return ledgers.from_json(obj.get("ledger"), target_id)

    async def _list(self) -> list[ledgers.Ledger]:
        return [led for _obj, led in await self._list_objects()]

    async def _list_objects(self) -> list[tuple[KubeObject, ledgers.Ledger]]:
        try:
            objs = await self._client.list(LEDGERS.within(self._namespace))
        except KubeError as e:
            raise StoreUnavailable(f"ledgers: {e}") from e
        return [
            (o, ledgers.from_json(o.get("ledger"), str(o.get("spec", {}).get("target", "")))) for o in objs
        ]

    def _object(self, target_id: str, led: ledgers.Ledger, previous: KubeObject | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": ledger_name(target_id),
            "namespace": self._namespace,
            "labels": {LEDGER_LABEL: "true", "app.kubernetes.io/managed-by": "webhook-service"},
        }
        if previous is not None:
            metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
        return {
            "apiVersion": "webhook-service.dev/v1",
            "kind": "IntentLedger",
            "metadata": metadata,
            "spec": {"target": target_id},
            "ledger": led,
        }
