"""The intent ledger's rules (Kubernetes mode), as pure functions: same rules as the SQLite store."""

from __future__ import annotations

from dataclasses import replace

from controller.store import ledger
from controller.store.base import FoldStep, HitRequest

TARGET = "scaleService:1a5/1s7"
INTENT = {"action": "up", "amount": 1, "min": 1, "max": 10}


def hit(at: float = 1000.0, **changes: object) -> HitRequest:
    base = HitRequest(
        receiver="default/web-up",
        receiver_uid="uid-1",
        target_id=TARGET,
        disposition="act",
        reason=None,
        intent=INTENT,
        idempotency_key=None,
        dedupe_key=None,
        dedupe_window=60.0,
        cooldown=0.0,
        received_at=at,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_a_repeated_idempotency_key_is_a_duplicate_of_the_first_hit_and_changes_nothing() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(idempotency_key="k"), "h1")
    again, result = ledger.record_hit(led, hit(1500.0, idempotency_key="k"), "h2")
    assert (result.hit_id, result.outcome) == ("h1", "duplicate")
    assert again == led


def test_idempotency_keys_are_bounded_per_receiver() -> None:
    led = ledger.new_ledger(TARGET)
    for i in range(ledger.MAX_KEYS + 5):
        led, _ = ledger.record_hit(
            led, hit(1000.0 + i, idempotency_key=f"k{i}", disposition="ignored"), f"h{i}"
        )
    assert len(led["receivers"]["default/web-up"]["idempotency"]) <= ledger.MAX_KEYS
    _, newest = ledger.record_hit(led, hit(9999.0, idempotency_key=f"k{ledger.MAX_KEYS + 4}"), "x")
    assert newest.outcome == "duplicate"


def test_a_receiver_created_again_under_the_same_name_starts_afresh() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(idempotency_key="k"), "h1")
    _, result = ledger.record_hit(led, hit(1001.0, idempotency_key="k", receiver_uid="uid-2"), "h2")
    assert result.outcome == "accepted"


def test_commit_fold_records_desired_and_drops_the_folded_intents() -> None:
    led = ledger.new_ledger(TARGET)
    led, _ = ledger.record_hit(led, hit(1000.0), "h1")
    led, _ = ledger.record_hit(led, hit(1001.0), "h2")
    folded = ledger.commit_fold(
        led, 3, [FoldStep(seq=1, hit_id="h1", before=1, after=2, clamped=False)], 1002.0
    )
    assert [p.hit_id for p in ledger.pending_intents(folded)] == ["h2"]
    assert (folded["desired"], folded["converged"]) == (3, False)
    assert ledger.has_work(folded)


def test_fail_intents_fails_every_pending_intent_with_the_reason() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(), "h1")
    failed, count = ledger.fail_intents(led, "service 1s7 is gone", 2.0)
    assert count == 1
    assert failed["pending"] == [] and failed["lastError"] == "service 1s7 is gone"
    record = ledger.last_hits(failed)["default/web-up"]
    assert (record.intent_state, record.reason) == ("failed", "service 1s7 is gone")
    assert not ledger.has_work(failed)


def test_set_observed_confirms_the_desired_scale() -> None:
    led = ledger.commit_fold(
        ledger.record_hit(ledger.new_ledger(TARGET), hit(), "h1")[0],
        2,
        [FoldStep(seq=1, hit_id="h1", before=1, after=2, clamped=False)],
        1.0,
    )
    done = ledger.set_observed(led, 2, True, None, 2.0)
    state = ledger.target_state(done)
    assert (state.desired, state.observed, state.converged) == (2, 2, True)
    assert not ledger.has_work(done)


def test_a_ledger_read_from_an_object_gets_defaults_for_missing_fields() -> None:
    assert ledger.from_json({"desired": 4}, TARGET) == {**ledger.new_ledger(TARGET), "desired": 4}
    assert ledger.from_json(None, TARGET) == ledger.new_ledger(TARGET)
