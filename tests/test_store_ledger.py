"""The intent ledger's rules (Kubernetes mode), as pure functions: same rules as the SQLite store."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from controller.model import RateLimit
from controller.store import ledger
from controller.store.base import FoldStep, HitRateLimited, HitRequest, LedgerFull

TARGET = "scaleService:1a5/1s7"
INTENT = {"action": "up", "amount": 1, "min": 1, "max": 10}
DAY = 24 * 3600.0


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


def full_ledger() -> ledger.Ledger:
    """A ledger holding ``MAX_PENDING`` pending intents, built directly (recording them costs more)."""
    led = ledger.new_ledger(TARGET)
    led["pending"] = [
        {"seq": i, "hit": f"h{i}", "receiver": "default/web-up", "intent": INTENT, "at": 900.0}
        for i in range(1, ledger.MAX_PENDING + 1)
    ]
    led["nextSeq"] = ledger.MAX_PENDING + 1
    return led


def test_a_hit_to_act_on_is_refused_when_the_target_has_the_most_pending_intents() -> None:
    with pytest.raises(LedgerFull) as refused:
        ledger.record_hit(full_ledger(), hit(), "h-new")
    assert refused.value.retry_after is not None and refused.value.retry_after > 0


def test_a_full_ledger_still_records_hits_that_add_no_intent() -> None:
    led, result = ledger.record_hit(full_ledger(), hit(disposition="ignored", intent=None), "h-new")
    assert result.outcome == "ignored"
    assert len(led["pending"]) == ledger.MAX_PENDING


def test_a_full_ledger_has_room_again_once_an_intent_is_folded() -> None:
    led = ledger.commit_fold(
        full_ledger(), 2, [FoldStep(seq=1, hit_id="h1", before=1, after=2, clamped=False)], 950.0
    )
    _, result = ledger.record_hit(led, hit(), "h-new")
    assert result.outcome == "accepted"


def test_idempotency_and_retry_keys_are_stored_as_fixed_size_digests() -> None:
    long_key = "k" * 255
    led, _ = ledger.record_hit(
        ledger.new_ledger(TARGET), hit(idempotency_key=long_key, dedupe_key="group/" + long_key), "h1"
    )
    entry = led["receivers"]["default/web-up"]
    assert [len(k) for k in (*entry["idempotency"], *entry["dedupe"])] == [32, 32]
    assert long_key not in json.dumps(led)
    _, again = ledger.record_hit(led, hit(1001.0, idempotency_key=long_key), "h2")
    assert (again.outcome, again.hit_id) == ("duplicate", "h1")


def test_the_rate_limit_keeps_two_numbers_per_receiver_whatever_its_requests() -> None:
    limit = RateLimit(requests=60_000, per_seconds=60.0)
    led = ledger.new_ledger(TARGET)
    for i in range(2000):
        led, _ = ledger.record_hit(led, hit(rate_limit=limit, disposition="ignored", intent=None), f"h{i}")
    entry = led["receivers"]["default/web-up"]
    assert entry["bucket"] == {"tokens": 58_000.0, "at": 1000.0}
    assert "rate" not in entry and len(json.dumps(entry)) < 400


def test_a_receiver_s_bucket_is_dropped_once_it_is_full_again() -> None:
    swallowed = hit(rate_limit=RateLimit(requests=3, per_seconds=3600.0), cooldown=DAY)  # counts nothing
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), swallowed, "h1")
    kept, _ = ledger.record_hit(led, replace(swallowed, received_at=1000.0 + 3599), "h2")
    dropped, _ = ledger.record_hit(led, replace(swallowed, received_at=1000.0 + 3600), "h3")
    assert "bucket" in kept["receivers"]["default/web-up"]
    assert "bucket" not in dropped["receivers"]["default/web-up"]


def test_an_older_ledger_s_list_of_rate_times_reads_as_a_full_bucket() -> None:
    limit = RateLimit(requests=3, per_seconds=3600.0)
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(disposition="ignored", intent=None), "h1")
    led["receivers"]["default/web-up"]["rate"] = [1000.0, 1000.0, 1000.0]
    for i in range(3):
        led, result = ledger.record_hit(led, hit(1001.0, rate_limit=limit), f"h{i + 2}")
        assert result.outcome == "accepted"
    with pytest.raises(HitRateLimited):
        ledger.record_hit(led, hit(1001.0, rate_limit=limit), "h5")
    assert "rate" not in led["receivers"]["default/web-up"]


def test_an_entry_past_its_longest_window_is_dropped_by_the_next_hit_of_the_target() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(cooldown=2 * DAY), "h1")
    gone = hit(1000.0 + 2 * DAY + 1, receiver="default/web-down", receiver_uid="uid-2")
    kept, _ = ledger.record_hit(led, replace(gone, received_at=1000.0 + 2 * DAY - 1), "h2")
    dropped, _ = ledger.record_hit(led, gone, "h3")
    assert set(kept["receivers"]) == {"default/web-up", "default/web-down"}
    assert set(dropped["receivers"]) == {"default/web-down"}


def test_a_ledger_is_empty_once_nothing_is_pending_and_every_entry_has_expired() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(disposition="ignored", intent=None), "h1")
    assert not ledger.is_empty(led, 1000.0 + DAY)
    assert ledger.is_empty(led, 1000.0 + DAY + 1)


def test_a_ledger_with_pending_intents_is_never_empty() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(), "h1")
    assert not ledger.is_empty(led, 1000.0 + 365 * DAY)


def test_recording_a_hit_leaves_the_ledger_it_was_given_unchanged() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(idempotency_key="a", dedupe_key="d"), "h1")
    before = copy.deepcopy(led)
    limit = RateLimit(requests=5, per_seconds=60.0)
    ledger.record_hit(led, hit(1001.0, idempotency_key="b", dedupe_key="e", rate_limit=limit), "h2")
    ledger.fail_intents(led, "gone", 1002.0)
    ledger.set_observed(led, 3, True, None, 1003.0)
    assert led == before


# -- truthful state and the status views' history


def test_a_new_ledger_is_not_converged_and_has_nothing_to_confirm() -> None:
    led, _ = ledger.record_hit(ledger.new_ledger(TARGET), hit(disposition="ignored", intent=None), "h1")
    state = ledger.target_state(led)
    assert (state.converged, state.state, ledger.has_work(led)) == (False, "new", False)


def test_an_object_written_before_the_history_reads_with_defaults_and_unconverged_if_never_folded() -> None:
    old = {
        k: v
        for k, v in ledger.new_ledger(TARGET).items()
        if k not in ("history", "recentHits", "latestIntent")
    }
    read = ledger.from_json({**old, "converged": True}, TARGET)
    assert (read["history"], read["recentHits"], read["latestIntent"], read["converged"]) == (
        [],
        [],
        None,
        False,
    )
    assert ledger.from_json({**old, "desired": 2, "converged": True}, TARGET)["converged"] is True


def test_history_is_bounded_to_the_newest_points() -> None:
    led = ledger.new_ledger(TARGET)
    for i in range(ledger.MAX_HISTORY + 5):
        led = ledger.set_observed(led, i, True, None, 1000.0 + i)
    assert len(led["history"]) == ledger.MAX_HISTORY
    assert led["history"][-1]["o"] == ledger.MAX_HISTORY + 4


def test_a_confirmation_repeated_adds_no_history_point() -> None:
    led = ledger.set_observed(ledger.new_ledger(TARGET), 2, True, None, 1000.0)
    assert ledger.set_observed(led, 2, True, None, 1030.0)["history"] == led["history"]


def test_recent_hits_are_bounded_to_the_newest_and_follow_their_intent() -> None:
    led = ledger.new_ledger(TARGET)
    for i in range(ledger.MAX_RECENT_HITS + 5):
        led, _ = ledger.record_hit(led, hit(1000.0 + i), f"h{i:03}")
    assert len(led["recentHits"]) == ledger.MAX_RECENT_HITS
    failed, _ = ledger.fail_intents(led, "gone", 2000.0)
    [newest, *_] = ledger.recent_hits(failed)
    assert (newest.hit_id, newest.target_id, newest.intent_state, newest.reason) == (
        f"h{ledger.MAX_RECENT_HITS + 4:03}",
        TARGET,
        "failed",
        "gone",
    )


def test_history_and_recent_hits_at_their_caps_take_a_small_part_of_the_size_cap() -> None:
    led = ledger.new_ledger(TARGET)
    for i in range(ledger.MAX_RECENT_HITS):
        led, _ = ledger.record_hit(
            led, hit(1000.0 + i, disposition="ignored", intent=None, reason="resolved"), f"h{i}"
        )
    for i in range(ledger.MAX_HISTORY):
        led = ledger.set_observed(led, i, False, "Cattle answered 503: service unavailable", 2000.0 + i)
    assert ledger.encoded_size(led) < ledger.MAX_LEDGER_BYTES / 20
