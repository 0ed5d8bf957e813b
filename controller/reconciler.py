"""The reconcile loop: pending intents -> recorded desired scale -> the target converged to it.

Why it is shaped this way:

- **One worker per target, at most.** ``wake(target_id)`` starts a worker for the target or marks
  the running one dirty, so intents of one target are folded strictly in order while different
  targets proceed in parallel. The listener calls ``wake`` right after recording an intent, so
  there is no polling delay; a periodic resync and a pass at start pick up anything else (intents
  left pending by an earlier run, a desired value never confirmed).
- **Record, then act.** A pass first finishes what an earlier pass recorded (a desired value not
  yet confirmed on the target), then reads the current scale, folds the pending intents, records
  the new absolute desired value and marks the intents folded in one store transaction, and only
  then sets the target. A crash anywhere repeats an idempotent "set scale to N", never a step.
- **Retries live here and only here.** Drivers, the store and the Cattle and Kubernetes clients raise
  ``WebhookServiceError`` s (``controller.errors``); this loop reads nothing but their ``retryable``
  and ``retry_after``: it retries the retryable ones with capped exponential backoff and jitter
  (honouring Retry-After), forever, so nothing accepted is dropped while Cattle is down. Permanent
  errors (the target is gone, can't be scaled, the request is wrong) fail the pending intents with
  their ``summary`` instead. Any other exception is a bug and ends the target's worker with it.
- **Paused while another replica leads** (operator mode, ``controller.operator.leader``): ``pause``
  cancels every worker and makes ``wake`` a no-op; ``resume`` lets them run again, and the leader's
  ``run`` starts with a resync that picks up whatever was woken meanwhile. The store fences each fold
  (``FoldConflict``) against a worker that was cancelled too late to keep its write from landing.
- **Drivers that are not scales** (``IntentApplier`` s, e.g. serviceUpgrade, see
  ``controller.drivers.contract``) take one generic hook: the pending intents are handed to the
  driver, which carries them out and observes the target itself, and they are marked done only once
  it returns (``_apply_intents``).
- **Converged means confirmed.** A target is converged only once a desired value was applied and
  read back; a new target is not, nor one whose attempt failed (the error is recorded with it). A
  refusal (``_fail``) withdraws the desired value in the store, so a resync finds nothing to retry
  on the target until a new hit gives it one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from controller.backoff import Backoff
from controller.cattle.errors import CattleUnauthorized
from controller.drivers.base import DriverContext, TargetRefused
from controller.drivers.contract import DriverSet, IntentApplier, Scaler
from controller.errors import WebhookServiceError
from controller.fold import fold
from controller.kube.errors import KubeUnauthorized
from controller.metrics import Metrics
from controller.model import Target
from controller.store.base import IntentStore, StoreError

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Reconciler:
    def __init__(
        self,
        *,
        store: IntentStore,
        drivers: DriverSet,
        ctx: DriverContext,
        metrics: Metrics,
        backoff: Backoff,
        resync_interval: float,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._drivers = drivers
        self._ctx = ctx
        self._metrics = metrics
        self._backoff = backoff
        self._resync_interval = resync_interval
        self._sleep = sleep
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._paused = False

    def wake(self, target_id: str) -> None:
        """Reconcile the target soon: now if idle, right after the current pass if busy."""
        if self._paused:
            return
        self._dirty.add(target_id)
        if target_id not in self._workers:
            self._workers[target_id] = asyncio.create_task(
                self._worker(target_id), name=f"reconcile {target_id}"
            )

    async def run(self) -> None:
        """Pick up work left by an earlier run, then resync periodically. Runs until cancelled."""
        try:
            while True:
                try:
                    for target_id in await self._store.targets_with_work():
                        self.wake(target_id)
                except StoreError:
                    logger.exception("resync could not read the store")
                await self._sleep(self._resync_interval)
        finally:
            await self.stop()

    async def stop(self) -> None:
        workers = list(self._workers.values())
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        self._workers.clear()

    async def pause(self) -> None:
        """Stop every worker and ignore wakes until ``resume`` (this replica no longer leads)."""
        self._paused = True
        self._dirty.clear()
        await self.stop()

    def resume(self) -> None:
        self._paused = False

    async def idle(self) -> None:
        """Wait until no worker is running (for tests and orderly shutdown)."""
        while self._workers:
            await asyncio.gather(*list(self._workers.values()), return_exceptions=True)

    async def _worker(self, target_id: str) -> None:
        try:
            while target_id in self._dirty:
                self._dirty.discard(target_id)
                await self._reconcile_with_retry(target_id)
        finally:
            # No await between the loop's last check and this: a wake() can't slip in between.
            self._workers.pop(target_id, None)

    async def _reconcile_with_retry(self, target_id: str) -> None:
        attempt = 0
        while True:
            try:
                result = await self.reconcile_once(target_id)
            except WebhookServiceError as e:
                if not e.retryable:
                    await self._fail(target_id, e.summary)
                    return
                attempt += 1
                delay = self._backoff.delay(attempt, e.retry_after)
                await self._note_error(target_id, e, attempt, delay)
                await self._sleep(delay)
                continue
            self._metrics.reconciles.labels(target_id, result).inc()
            return

    async def reconcile_once(self, target_id: str) -> str:
        """One pass over the target. Returns what it did: "converged", "applied" or "idle"."""
        driver_name, _, key = target_id.partition(":")
        driver = self._drivers.get(driver_name)
        if driver is None:
            raise TargetRefused(f"no driver {driver_name!r} is installed for target {target_id}")
        target = driver.target_from_key(key)
        applier = self._drivers.appliers.get(driver_name)
        if applier is not None:
            return await self._apply_intents(applier, target)
        scaler = self._drivers.scalers.get(driver_name)
        if scaler is None:
            raise TargetRefused(f"driver {driver_name} records no intents, so target {target_id} has none")
        result = "idle"
        state = await self._store.get_target(target_id)
        if state is not None and state.desired is not None and not state.converged:
            await self._converge(scaler, target, state.desired)
            result = "converged"
        pending = await self._store.pending_intents(target_id)
        self._metrics.pending_intents.labels(target_id).set(len(pending))
        if not pending:
            return result
        current = await scaler.observe(target, self._ctx)
        desired, steps = fold(current, pending)
        await self._store.commit_fold(target_id, desired, steps)
        self._metrics.desired_scale.labels(target_id).set(desired)
        self._metrics.pending_intents.labels(target_id).set(0)
        receivers = {p.seq: p.receiver for p in pending}
        for s in steps:  # DEBUG: a line per hit would cost more than the hit; the fold's line follows
            logger.debug(
                "[%s] hit %s of %s: scale %d -> %d%s",
                target_id, s.hit_id, receivers[s.seq], s.before, s.after, " (clamped)" if s.clamped else "",
            )  # fmt: skip
        logger.info("[%s] folded %d intent(s): scale %d -> %d", target_id, len(steps), current, desired)
        if desired == current:
            await self._store.set_observed(target_id, current, converged=True, error=None)
            self._metrics.observed_scale.labels(target_id).set(current)
        else:
            await self._converge(scaler, target, desired)
        return "applied"

    async def _apply_intents(self, applier: IntentApplier, target: Target) -> str:
        """Hand the pending intents to a driver that carries them out itself (e.g. serviceUpgrade).

        Durability: the intents stay pending until ``apply_intents`` returns, i.e. until the work is
        finished (an upgrade finished, not merely started); only then are they marked folded. A crash
        or a retryable error mid-way leaves them pending, and the next pass (the resync, or the start
        of the next run) hands them over again. The driver observes the target first, so it continues
        what it finds (a service already carrying the new image and upgrading/upgraded is waited for
        and finished) instead of starting it again. Permanent failures (``TargetRefused``, a
        non-retryable error) fail the intents in ``_reconcile_with_retry`` as for scale drivers.
        """
        target_id = target.id
        state = await self._store.get_target(target_id)
        # Confirm what a crash left unconfirmed (between commit_fold and set_observed); a target never
        # folded, or whose intents were refused, has no desired value to confirm.
        if state is not None and state.desired is not None and not state.converged:
            # Confirmed before the next fold, which the store refuses on an unconfirmed value.
            await self._store.set_observed(target_id, state.desired, converged=True, error=None)
        pending = await self._store.pending_intents(target_id)
        self._metrics.pending_intents.labels(target_id).set(len(pending))
        if not pending:
            return "idle"
        steps = await applier.apply_intents(target, pending, self._ctx)
        # For a driver that is not a scale, the recorded "desired" (and "observed") is not a scale but
        # what the newest intent achieved, e.g. how many services run the pushed image: it gives the
        # status a number, and converged=True tells the next pass there is nothing to finish.
        done = steps[-1].after if steps else 0
        await self._store.commit_fold(target_id, done, steps)
        await self._store.set_observed(target_id, done, converged=True, error=None)
        self._metrics.pending_intents.labels(target_id).set(0)
        logger.info("[%s] applied %d intent(s): %d done", target_id, len(steps), done)
        return "applied"

    async def _converge(self, scaler: Scaler, target: Target, desired: int) -> None:
        observed = await scaler.apply(target, desired, self._ctx)
        await self._store.set_observed(target.id, observed, converged=True, error=None)
        self._metrics.observed_scale.labels(target.id).set(observed)
        logger.info("[%s] converged at scale %d", target.id, observed)

    async def _fail(self, target_id: str, reason: str) -> None:
        count = await self._store.fail_intents(target_id, reason)
        self._metrics.reconciles.labels(target_id, "failed").inc()
        self._metrics.pending_intents.labels(target_id).set(0)
        logger.error("[%s] gave up on %d pending intent(s): %s", target_id, count, reason)

    async def _note_error(
        self, target_id: str, error: WebhookServiceError, attempt: int, delay: float
    ) -> None:
        if isinstance(error, CattleUnauthorized):
            message = (
                f"credentials rejected by Cattle ({error.status}): check CATTLE_ACCESS_KEY/CATTLE_SECRET_KEY"
            )
            result = "credentials_error"
        elif isinstance(error, KubeUnauthorized):
            message = f"the Kubernetes API refused the service account ({error}): check manifests/rbac.yaml"
            result = "credentials_error"
        else:
            message = error.summary
            result = "retry"
        self._metrics.reconciles.labels(target_id, result).inc()
        logger.warning("[%s] attempt %d failed, retrying in %.1fs: %s", target_id, attempt, delay, message)
        try:
            state = await self._store.get_target(target_id)
            observed = state.observed if state is not None else None
            converged = state.converged if state is not None else False  # nothing was ever applied
            await self._store.set_observed(target_id, observed, converged=converged, error=message)
        except StoreError:
            logger.warning("[%s] could not record the error in the store", target_id)
