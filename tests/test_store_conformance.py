"""What every store does, run against each: SQLite (standalone) and the Kubernetes ledgers (emulator).

One behaviour per test, written once against ``IntentStore``; the ``store`` fixture is each store in
turn, with its clock at ``T0``. Time windows are driven by ``HitRequest.received_at`` values, never
by sleeping. What only one store does (group commit, pruning, compare-and-swap between replicas)
stays in that store's own test file.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from controller.kube.client import KubeClient
from controller.model import Disposition, RateLimit
from controller.store.base import FoldStep, HitRateLimited, HitRequest, IntentStore, StoreError, TargetPoint
from controller.store.kube import KubeStore
from controller.store.sqlite import SqliteStore
from tests.kubeemu import KubeEmulator

T0 = 1_700_000_000.0
DAY = 24 * 3600.0
TARGET = "scaleService:1a5/1s7"
UP = {"action": "up", "amount": 1, "min": 1, "max": 10}
TWO_PER_MINUTE = RateLimit(requests=2, per_seconds=60.0)


def hit(
    *,
    at: float = T0,
    receiver: str = "default/up",
    target: str = TARGET,
    disposition: Disposition = "act",
    reason: str | None = None,
    idempotency_key: str | None = None,
    dedupe_key: str | None = None,
    dedupe_window: float = 60.0,
    cooldown: float = 0.0,
    rate_limit: RateLimit | None = None,
) -> HitRequest:
    return HitRequest(
        receiver=receiver,
        receiver_uid="uid-1",
        target_id=target,
        disposition=disposition,
        reason=reason,
        intent=dict(UP) if disposition == "act" else None,
        idempotency_key=idempotency_key,
        dedupe_key=dedupe_key,
        dedupe_window=dedupe_window,
        cooldown=cooldown,
        received_at=at,
        rate_limit=rate_limit,
    )


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[IntentStore]:
    store = SqliteStore(tmp_path / "webhook.db", clock=lambda: T0)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def kube_store(kube: KubeEmulator) -> AsyncIterator[IntentStore]:
    kube.add_namespaces("webhook-service")
    async with aiohttp.ClientSession() as session:
        store = KubeStore(
            KubeClient(session, str(kube.url).rstrip("/"), {}), "webhook-service", clock=lambda: T0
        )
        await store.open()
        yield store
        await store.close()


@pytest.fixture(params=["sqlite_store", "kube_store"])
def store(request: pytest.FixtureRequest) -> IntentStore:
    store: IntentStore = request.getfixturevalue(request.param)
    return store


async def pending_hit_ids(store: IntentStore, target: str = TARGET) -> list[str]:
    return [p.hit_id for p in await store.pending_intents(target)]


# -- accepted


async def test_a_hit_to_act_on_is_accepted_with_a_pending_intent(store: IntentStore) -> None:
    result = await store.record_hit(hit())
    assert result.outcome == "accepted"
    [pending] = await store.pending_intents(TARGET)
    assert (pending.hit_id, pending.receiver, pending.intent) == (result.hit_id, "default/up", UP)


async def test_concurrent_hits_are_all_pending_in_arrival_order(store: IntentStore) -> None:
    results = await asyncio.gather(*(store.record_hit(hit(at=T0 + i)) for i in range(20)))
    pending = await store.pending_intents(TARGET)
    assert [p.hit_id for p in pending] == [r.hit_id for r in results]
    assert [p.seq for p in pending] == sorted(p.seq for p in pending)


# -- idempotency key


async def test_an_idempotency_key_repeat_within_24h_is_a_duplicate_of_the_first_hit(
    store: IntentStore,
) -> None:
    first = await store.record_hit(hit(idempotency_key="k"))
    again = await store.record_hit(hit(at=T0 + DAY - 0.001, idempotency_key="k"))
    assert (again.outcome, again.hit_id) == ("duplicate", first.hit_id)
    assert await pending_hit_ids(store) == [first.hit_id]


async def test_an_idempotency_key_repeat_24h_later_is_a_new_hit(store: IntentStore) -> None:
    await store.record_hit(hit(idempotency_key="k"))
    again = await store.record_hit(hit(at=T0 + DAY, idempotency_key="k"))
    assert again.outcome == "accepted"


async def test_an_idempotency_key_repeat_of_an_ignored_hit_is_a_duplicate(store: IntentStore) -> None:
    first = await store.record_hit(hit(disposition="ignored", reason="resolved", idempotency_key="k"))
    again = await store.record_hit(hit(at=T0 + 1, idempotency_key="k"))
    assert (again.outcome, again.hit_id) == ("duplicate", first.hit_id)


async def test_idempotency_keys_are_per_receiver(store: IntentStore) -> None:
    await store.record_hit(hit(idempotency_key="k"))
    other = await store.record_hit(hit(receiver="default/down", idempotency_key="k"))
    assert other.outcome == "accepted"


# -- dedupe key (Alertmanager retries)


async def test_a_dedupe_key_repeat_within_the_window_is_a_duplicate(store: IntentStore) -> None:
    first = await store.record_hit(hit(dedupe_key="n1"))
    again = await store.record_hit(hit(at=T0 + 59.999, dedupe_key="n1"))
    assert (again.outcome, again.hit_id) == ("duplicate", first.hit_id)
    assert await pending_hit_ids(store) == [first.hit_id]


async def test_a_dedupe_key_repeat_at_the_end_of_the_window_is_accepted(store: IntentStore) -> None:
    await store.record_hit(hit(dedupe_key="n1"))
    again = await store.record_hit(hit(at=T0 + 60, dedupe_key="n1"))
    assert again.outcome == "accepted"


async def test_a_different_dedupe_key_is_accepted(store: IntentStore) -> None:
    await store.record_hit(hit(dedupe_key="n1"))
    assert (await store.record_hit(hit(at=T0 + 1, dedupe_key="n2"))).outcome == "accepted"


async def test_dedupe_counts_only_accepted_hits(store: IntentStore) -> None:
    await store.record_hit(hit(disposition="ignored", reason="resolved", dedupe_key="n1"))
    assert (await store.record_hit(hit(at=T0 + 1, dedupe_key="n1"))).outcome == "accepted"


# -- cooldown


async def test_a_hit_within_the_cooldown_is_recorded_as_cooldown_without_intent(store: IntentStore) -> None:
    first = await store.record_hit(hit(cooldown=30))
    second = await store.record_hit(hit(at=T0 + 10, cooldown=30))
    assert second.outcome == "cooldown"
    assert await pending_hit_ids(store) == [first.hit_id]
    last = (await store.read_status()).last_hits["default/up"]
    assert (last.hit_id, last.reason) == (
        second.hit_id,
        "cooldown: last accepted hit 10.0s ago, cooldown is 30s",
    )


async def test_a_hit_at_the_end_of_the_cooldown_is_accepted(store: IntentStore) -> None:
    await store.record_hit(hit(cooldown=30))
    assert (await store.record_hit(hit(at=T0 + 30, cooldown=30))).outcome == "accepted"


async def test_cooldown_counts_from_the_last_accepted_hit_only(store: IntentStore) -> None:
    await store.record_hit(hit(cooldown=30))
    await store.record_hit(hit(at=T0 + 20, cooldown=30))  # cooldown: does not restart it
    assert (await store.record_hit(hit(at=T0 + 30, cooldown=30))).outcome == "accepted"


# -- rate limit


async def test_a_burst_of_the_rate_limit_s_requests_is_let_through_at_once(store: IntentStore) -> None:
    for _ in range(2):
        assert (await store.record_hit(hit(rate_limit=TWO_PER_MINUTE))).outcome == "accepted"
    with pytest.raises(HitRateLimited):
        await store.record_hit(hit(rate_limit=TWO_PER_MINUTE))


async def test_a_hit_over_the_rate_limit_is_refused_until_a_token_refilled(store: IntentStore) -> None:
    for _ in range(2):
        await store.record_hit(hit(rate_limit=TWO_PER_MINUTE))
    with pytest.raises(HitRateLimited) as refused:
        await store.record_hit(hit(at=T0 + 1, rate_limit=TWO_PER_MINUTE))
    assert refused.value.retry_after == pytest.approx(29.0)
    with pytest.raises(HitRateLimited) as refused:
        await store.record_hit(hit(at=T0 + 29, rate_limit=TWO_PER_MINUTE))
    assert refused.value.retry_after == pytest.approx(1.0)
    assert (await store.record_hit(hit(at=T0 + 30, rate_limit=TWO_PER_MINUTE))).outcome == "accepted"
    with pytest.raises(HitRateLimited):
        await store.record_hit(hit(at=T0 + 30, rate_limit=TWO_PER_MINUTE))


async def test_a_rate_limited_hit_is_not_recorded_nor_counted(store: IntentStore) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    first = await store.record_hit(hit(rate_limit=limit))
    with pytest.raises(HitRateLimited):
        await store.record_hit(hit(at=T0 + 30, rate_limit=limit, idempotency_key="k"))
    assert (await store.read_status()).last_hits["default/up"].hit_id == first.hit_id
    assert (
        await store.record_hit(hit(at=T0 + 60, rate_limit=limit, idempotency_key="k"))
    ).outcome == "accepted"


async def test_a_repeat_is_a_duplicate_even_over_the_rate_limit(store: IntentStore) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    first = await store.record_hit(hit(rate_limit=limit, idempotency_key="k"))
    again = await store.record_hit(hit(at=T0 + 1, rate_limit=limit, idempotency_key="k"))
    assert (again.outcome, again.hit_id) == ("duplicate", first.hit_id)


async def test_hits_the_cooldown_swallows_do_not_use_up_the_rate_limit(store: IntentStore) -> None:
    limit = RateLimit(requests=2, per_seconds=60.0)
    await store.record_hit(hit(rate_limit=limit, cooldown=30))
    for i in range(1, 4):
        assert (await store.record_hit(hit(at=T0 + i, rate_limit=limit, cooldown=30))).outcome == "cooldown"
    assert (await store.record_hit(hit(at=T0 + 30, rate_limit=limit, cooldown=30))).outcome == "accepted"


async def test_the_rate_limit_is_per_receiver(store: IntentStore) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    await store.record_hit(hit(rate_limit=limit))
    other = await store.record_hit(hit(receiver="default/down", rate_limit=limit))
    assert other.outcome == "accepted"


# -- suspended and ignored


@pytest.mark.parametrize("disposition", ["ignored", "suspended"])
async def test_an_ignored_or_suspended_hit_is_recorded_with_its_reason_and_no_intent(
    store: IntentStore, disposition: Disposition
) -> None:
    result = await store.record_hit(hit(disposition=disposition, reason="because"))
    assert result.outcome == disposition
    assert await store.pending_intents(TARGET) == []
    last = (await store.read_status()).last_hits["default/up"]
    assert (last.hit_id, last.outcome, last.reason, last.intent_state) == (
        result.hit_id,
        disposition,
        "because",
        None,
    )


async def test_suspended_hits_count_against_the_rate_limit(store: IntentStore) -> None:
    limit = RateLimit(requests=1, per_seconds=60.0)
    await store.record_hit(hit(disposition="suspended", reason="spec.suspend", rate_limit=limit))
    with pytest.raises(HitRateLimited):
        await store.record_hit(hit(at=T0 + 1, rate_limit=limit))


async def test_a_hit_to_act_on_without_an_intent_is_an_error(store: IntentStore) -> None:
    with pytest.raises(StoreError, match="to act on has no intent"):
        await store.record_hit(replace(hit(), intent=None))


# -- intents and targets


async def test_commit_fold_records_desired_and_marks_the_steps_folded(store: IntentStore) -> None:
    a = await store.record_hit(hit())
    b = await store.record_hit(hit(at=T0 + 1))
    [pa, _] = await store.pending_intents(TARGET)
    await store.commit_fold(TARGET, 4, [FoldStep(pa.seq, a.hit_id, before=3, after=4, clamped=False)])
    state = await store.get_target(TARGET)
    assert state is not None
    assert (state.desired, state.converged, state.updated_at) == (4, False, T0)
    assert await pending_hit_ids(store) == [b.hit_id]
    assert (await store.read_status()).last_hits["default/up"].intent_state == "pending"


async def test_folded_steps_show_in_last_hits(store: IntentStore) -> None:
    a = await store.record_hit(hit())
    [p] = await store.pending_intents(TARGET)
    await store.commit_fold(TARGET, 10, [FoldStep(p.seq, a.hit_id, before=10, after=10, clamped=True)])
    last = (await store.read_status()).last_hits["default/up"]
    assert (last.intent_state, last.before, last.after, last.clamped) == ("folded", 10, 10, True)


async def test_commit_fold_with_a_step_already_folded_records_nothing(store: IntentStore) -> None:
    a = await store.record_hit(hit())
    [p] = await store.pending_intents(TARGET)
    step = FoldStep(p.seq, a.hit_id, before=1, after=2, clamped=False)
    await store.commit_fold(TARGET, 2, [step])
    b = await store.record_hit(hit(at=T0 + 1))
    [pb] = await store.pending_intents(TARGET)
    with pytest.raises(StoreError):
        await store.commit_fold(TARGET, 9, [FoldStep(pb.seq, b.hit_id, 2, 3, False), step])
    state = await store.get_target(TARGET)
    assert state is not None and state.desired == 2
    assert await pending_hit_ids(store) == [b.hit_id]


async def test_fail_intents_fails_the_pending_intents_and_records_the_error(store: IntentStore) -> None:
    await store.record_hit(hit())
    await store.record_hit(hit(at=T0 + 1))
    await store.record_hit(hit(at=T0 + 2, target="scaleService:1a5/1s8"))
    assert await store.fail_intents(TARGET, "service is global") == 2
    assert await store.pending_intents(TARGET) == []
    state = await store.get_target(TARGET)
    assert state is not None
    assert (state.converged, state.last_error, state.desired) == (False, "service is global", None)
    assert len(await store.pending_intents("scaleService:1a5/1s8")) == 1


async def test_last_hits_shows_a_failed_intent_with_its_reason(store: IntentStore) -> None:
    await store.record_hit(hit())
    await store.fail_intents(TARGET, "service not found")
    last = (await store.read_status()).last_hits["default/up"]
    assert (last.outcome, last.intent_state, last.reason) == ("accepted", "failed", "service not found")


async def test_last_hits_shows_each_receivers_latest_hit(store: IntentStore) -> None:
    await store.record_hit(hit())
    latest = await store.record_hit(hit(at=T0 + 1, disposition="ignored", reason="resolved"))
    down = await store.record_hit(hit(receiver="default/down", target="scaleService:1a5/1s8"))
    hits = (await store.read_status()).last_hits
    assert {k: v.hit_id for k, v in hits.items()} == {
        "default/up": latest.hit_id,
        "default/down": down.hit_id,
    }


async def test_targets_with_work_are_those_with_pending_intents_or_an_unconfirmed_desired_value(
    store: IntentStore,
) -> None:
    await store.record_hit(hit(target="t:pending"))
    await store.commit_fold("t:unconfirmed", 3, [])
    await store.commit_fold("t:done", 3, [])
    await store.set_observed("t:done", 3, converged=True, error=None)
    assert await store.targets_with_work() == ["t:pending", "t:unconfirmed"]


async def test_set_observed_keeps_desired_and_replaces_the_rest(store: IntentStore) -> None:
    await store.commit_fold(TARGET, 5, [])
    await store.set_observed(TARGET, 4, converged=False, error="busy")
    await store.set_observed(TARGET, 5, converged=True, error=None)
    state = await store.get_target(TARGET)
    assert state is not None
    assert (state.desired, state.observed, state.converged, state.last_error) == (5, 5, True, None)
    assert [t.target_id for t in (await store.read_status()).targets] == [TARGET]


async def test_an_unknown_target_has_no_state(store: IntentStore) -> None:
    assert await store.get_target("t:unknown") is None
    assert await store.pending_intents("t:unknown") == []


# -- truthful state


async def test_a_folded_target_is_pending_until_its_desired_value_is_confirmed(store: IntentStore) -> None:
    await store.commit_fold(TARGET, 3, [])
    state = await store.get_target(TARGET)
    assert state is not None and (state.converged, state.state) == (False, "pending")
    await store.set_observed(TARGET, 3, converged=True, error=None)
    state = await store.get_target(TARGET)
    assert state is not None and (state.converged, state.state) == (True, "converged")


async def test_an_error_on_a_target_never_applied_leaves_it_unconverged_in_error(
    store: IntentStore,
) -> None:
    await store.record_hit(hit())
    await store.set_observed(TARGET, None, converged=False, error="Cattle answered 503")
    state = await store.get_target(TARGET)
    assert state is not None
    assert (state.desired, state.converged, state.state) == (None, False, "error")
    assert await store.targets_with_work() == [TARGET]  # its pending intent


async def test_a_target_whose_intents_were_refused_is_in_error_with_nothing_to_retry(
    store: IntentStore,
) -> None:
    await store.commit_fold(TARGET, 3, [])
    await store.set_observed(TARGET, 3, converged=True, error=None)
    await store.record_hit(hit())
    await store.fail_intents(TARGET, "service is global")
    state = await store.get_target(TARGET)
    assert state is not None
    assert (state.desired, state.observed, state.converged, state.state) == (None, 3, False, "error")
    assert await store.targets_with_work() == []


# -- the status views' history


def point(
    desired: int | None, observed: int | None, converged: bool, error: str | None = None
) -> TargetPoint:
    return TargetPoint(at=T0, desired=desired, observed=observed, converged=converged, error=error)


async def test_history_has_a_point_per_visible_change_and_none_for_a_confirmation_repeated(
    store: IntentStore,
) -> None:
    await store.commit_fold(TARGET, 3, [])
    await store.set_observed(TARGET, 3, converged=True, error=None)
    await store.set_observed(TARGET, 3, converged=True, error=None)  # a resync confirming it again
    await store.commit_fold(TARGET, 4, [])
    await store.set_observed(TARGET, 3, converged=False, error="busy")
    await store.set_observed(TARGET, 3, converged=False, error="busy")  # the retry failing alike
    await store.fail_intents(TARGET, "refused")
    assert (await store.read_status()).history == {
        TARGET: [
            point(3, None, False),
            point(3, 3, True),
            point(4, 3, False),
            point(4, 3, False, "busy"),
            point(None, 3, False, "refused"),
        ]
    }


async def test_recording_hits_adds_no_history(store: IntentStore) -> None:
    await store.record_hit(hit())
    await store.record_hit(hit(at=T0 + 1, disposition="ignored", reason="resolved"))
    assert (await store.read_status()).history == {}


async def test_recent_hits_are_newest_first_with_their_target_and_fold(store: IntentStore) -> None:
    a = await store.record_hit(hit())
    b = await store.record_hit(hit(at=T0 + 1, receiver="default/down", target="t:other"))
    c = await store.record_hit(hit(at=T0 + 2, disposition="ignored", reason="resolved"))
    [pa] = await store.pending_intents(TARGET)
    await store.commit_fold(TARGET, 4, [FoldStep(pa.seq, a.hit_id, before=3, after=4, clamped=False)])
    await store.fail_intents("t:other", "gone")
    recent = (await store.read_status()).recent_hits
    assert [(r.hit_id, r.target_id, r.outcome, r.intent_state) for r in recent] == [
        (c.hit_id, TARGET, "ignored", None),
        (b.hit_id, "t:other", "accepted", "failed"),
        (a.hit_id, TARGET, "accepted", "folded"),
    ]
    assert (recent[2].before, recent[2].after, recent[1].reason) == (3, 4, "gone")


async def test_latest_intents_are_each_targets_newest_accepted_intent(store: IntentStore) -> None:
    down = {"action": "down", "amount": 2, "min": 1, "max": 10}
    await store.record_hit(hit())
    await store.record_hit(replace(hit(at=T0 + 1, receiver="default/down"), intent=down))
    await store.record_hit(hit(at=T0 + 2, disposition="ignored", reason="resolved"))
    await store.record_hit(hit(at=T0 + 3, target="t:other"))
    steps = [FoldStep(p.seq, p.hit_id, 1, 1, False) for p in await store.pending_intents(TARGET)]
    await store.commit_fold(TARGET, 1, steps)  # a folded intent is still the newest
    assert (await store.read_status()).latest_intents == {TARGET: down, "t:other": UP}
