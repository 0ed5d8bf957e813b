"""The one rule that decides a hit's outcome, as a table: (history, request) -> decision.

Each row names the behaviour it pins. Rows where two checks would both match show their order:
idempotency key, Alertmanager retry, cooldown, rate limit, the listener's disposition, accept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from controller.model import RateLimit
from controller.store.base import HitRequest, StoreError
from controller.store.outcome import Decision, Duplicate, RateLimited, Record, decide
from controller.store.rate_bucket import Bucket

AT = 1000.0
DAY = 86400.0
ONE_PER_10 = RateLimit(requests=1, per_seconds=10.0)
TWO_PER_10 = RateLimit(requests=2, per_seconds=10.0)


@dataclass
class History:
    """A receiver's history as plain data: key -> (hit id, received at)."""

    keys: dict[str, tuple[str, float]] = field(default_factory=dict)
    accepted_retries: dict[str, tuple[str, float]] = field(default_factory=dict)
    last_accepted: float | None = None
    bucket: Bucket | None = None

    def idempotent_hit(self, receiver: str, key: str, since: float) -> str | None:
        seen = self.keys.get(key)
        return seen[0] if seen is not None and seen[1] > since else None

    def retried_hit(self, receiver: str, dedupe_key: str, since: float) -> str | None:
        seen = self.accepted_retries.get(dedupe_key)
        return seen[0] if seen is not None and seen[1] > since else None

    def last_accepted_at(self, receiver: str) -> float | None:
        return self.last_accepted

    def rate_bucket(self, receiver: str) -> Bucket | None:
        return self.bucket


def request(**changes: Any) -> HitRequest:
    base = HitRequest(
        receiver="default/up",
        receiver_uid="uid-1",
        target_id="scaleService:1a5/1s7",
        disposition="act",
        reason=None,
        intent={"action": "up", "amount": 1, "min": 1, "max": 10},
        idempotency_key=None,
        dedupe_key=None,
        dedupe_window=60.0,
        cooldown=0.0,
        received_at=AT,
    )
    return replace(base, **changes)


KEY_SEEN = History(keys={"k": ("h-key", AT - 10)})
RETRY_SEEN = History(accepted_retries={"n": ("h-retry", AT - 10)})
ACCEPTED_10S_AGO = History(last_accepted=AT - 10)
EMPTIED_4S_AGO = History(bucket=Bucket(tokens=0.0, at=AT - 4))
ALL_SEEN = History(
    keys={"k": ("h-key", AT - 10)},
    accepted_retries={"n": ("h-retry", AT - 10)},
    last_accepted=AT - 10,
    bucket=Bucket(tokens=0.0, at=AT - 4),
)
COOLDOWN = "cooldown: last accepted hit 10.0s ago, cooldown is 30s"
SUSPENDED = {"disposition": "suspended", "reason": "spec.suspend", "intent": None}
IGNORED = {"disposition": "ignored", "reason": "status resolved", "intent": None}

ROWS: list[tuple[str, History, dict[str, Any], Decision]] = [
    # accept
    ("a hit with no history is accepted", History(), {}, Record("accepted", None, bucket=None)),
    (
        "an accepted hit takes a token from its receiver's full bucket",
        History(),
        {"rate_limit": ONE_PER_10},
        Record("accepted", None, bucket=Bucket(tokens=0.0, at=AT)),
    ),
    # 1. idempotency key
    (
        "a repeated idempotency key is a duplicate of its hit",
        KEY_SEEN,
        {"idempotency_key": "k"},
        Duplicate("h-key"),
    ),
    (
        "another idempotency key is a new hit",
        KEY_SEEN,
        {"idempotency_key": "other"},
        Record("accepted", None, None),
    ),
    (
        "an idempotency key a whole window old is a new hit",
        History(keys={"k": ("h-key", AT - DAY)}),
        {"idempotency_key": "k"},
        Record("accepted", None, None),
    ),
    # 2. Alertmanager retry
    (
        "an accepted notification within the window is retried",
        RETRY_SEEN,
        {"dedupe_key": "n"},
        Duplicate("h-retry"),
    ),
    (
        "a notification the dedupe window's length later is new",
        RETRY_SEEN,
        {"dedupe_key": "n", "dedupe_window": 10.0},
        Record("accepted", None, None),
    ),
    # 3. cooldown
    (
        "a hit within the cooldown is recorded as cooldown",
        ACCEPTED_10S_AGO,
        {"cooldown": 30.0},
        Record("cooldown", COOLDOWN, None),
    ),
    (
        "a hit at the end of the cooldown is accepted",
        ACCEPTED_10S_AGO,
        {"cooldown": 10.0},
        Record("accepted", None, None),
    ),
    # 4. rate limit
    (
        "a hit with no token left waits until one is there",
        EMPTIED_4S_AGO,
        {"rate_limit": ONE_PER_10},
        RateLimited(6.0),
    ),
    (
        "a hit with a token refilled is let through and takes it",
        History(bucket=Bucket(tokens=0.5, at=AT - 5)),
        {"rate_limit": TWO_PER_10},
        Record("accepted", None, bucket=Bucket(tokens=0.5, at=AT)),
    ),
    (
        "a limit of no requests refuses for a whole window",
        History(),
        {"rate_limit": RateLimit(0, 10.0)},
        RateLimited(10.0),
    ),
    (
        "a limit without a window limits nothing",
        EMPTIED_4S_AGO,
        {"rate_limit": RateLimit(1, 0.0)},
        Record("accepted", None, None),
    ),
    # 5. disposition
    (
        "a suspended receiver's hit is suspended",
        History(),
        SUSPENDED,
        Record("suspended", "spec.suspend", None),
    ),
    ("an ignored notification is ignored", History(), IGNORED, Record("ignored", "status resolved", None)),
    (
        "a suspended hit takes a token",
        History(),
        {**SUSPENDED, "rate_limit": ONE_PER_10},
        Record("suspended", "spec.suspend", bucket=Bucket(tokens=0.0, at=AT)),
    ),
    # the order between them
    (
        "an idempotency key comes before everything else",
        ALL_SEEN,
        {"idempotency_key": "k", "dedupe_key": "n", "cooldown": 30.0, "rate_limit": ONE_PER_10, **SUSPENDED},
        Duplicate("h-key"),
    ),
    (
        "an Alertmanager retry comes before the cooldown, rate limit and disposition",
        ALL_SEEN,
        {"dedupe_key": "n", "cooldown": 30.0, "rate_limit": ONE_PER_10, **SUSPENDED},
        Duplicate("h-retry"),
    ),
    (
        "the cooldown comes before the rate limit and disposition, and is not counted",
        ALL_SEEN,
        {"cooldown": 30.0, "rate_limit": ONE_PER_10, **SUSPENDED},
        Record("cooldown", COOLDOWN, None),
    ),
    (
        "the rate limit comes before the disposition",
        ALL_SEEN,
        {"rate_limit": ONE_PER_10, **IGNORED},
        RateLimited(6.0),
    ),
]


@pytest.mark.parametrize(("history", "changes", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_the_rule(history: History, changes: dict[str, Any], expected: Decision) -> None:
    assert decide(history, request(**changes), idempotency_window=DAY) == expected


def test_a_hit_to_act_on_without_an_intent_is_an_error() -> None:
    with pytest.raises(StoreError, match="hit of default/up to act on has no intent"):
        decide(History(), request(intent=None), idempotency_window=DAY)


def test_a_clock_stepped_back_never_asks_to_wait_more_than_one_window() -> None:
    stepped_back = History(bucket=Bucket(tokens=0.0, at=AT + 100))
    assert decide(stepped_back, request(rate_limit=ONE_PER_10), idempotency_window=DAY) == RateLimited(10.0)
