"""The rate limit's token bucket: ``take`` as arithmetic on two numbers, and the buckets kept in memory."""

from __future__ import annotations

import pytest

from controller.model import RateLimit
from controller.store.rate_bucket import Bucket, Buckets, take

AT = 1000.0
ONE_PER_10 = RateLimit(requests=1, per_seconds=10.0)
TWO_PER_10 = RateLimit(requests=2, per_seconds=10.0)
EMPTY = Bucket(tokens=0.0, at=AT)


def test_a_bucket_never_used_is_full_and_gives_a_burst_of_its_capacity() -> None:
    state: Bucket | None = None
    for _ in range(3):
        state, wait = take(RateLimit(requests=3, per_seconds=60.0), state, AT)
        assert wait is None
    assert state == EMPTY


def test_an_empty_bucket_refuses_with_the_seconds_until_a_token_is_there() -> None:
    bucket, wait = take(TWO_PER_10, EMPTY, AT + 1)
    assert bucket is None
    assert wait == pytest.approx(4.0)


def test_a_token_is_back_exactly_per_seconds_over_requests_after_the_bucket_emptied() -> None:
    assert take(TWO_PER_10, EMPTY, AT + 4.999)[0] is None
    assert take(TWO_PER_10, EMPTY, AT + 5) == (Bucket(tokens=0.0, at=AT + 5), None)


def test_a_bucket_refills_no_further_than_its_capacity() -> None:
    assert take(TWO_PER_10, EMPTY, AT + 3600) == (Bucket(tokens=1.0, at=AT + 3600), None)


def test_a_time_before_the_bucket_s_refills_nothing_and_keeps_the_later_time() -> None:
    half = Bucket(tokens=1.5, at=AT)
    assert take(TWO_PER_10, half, AT - 30) == (Bucket(tokens=0.5, at=AT), None)


def test_a_clock_stepped_back_never_asks_to_wait_more_than_per_seconds() -> None:
    assert take(ONE_PER_10, EMPTY, AT - 3600) == (None, 10.0)


def test_a_limit_of_no_requests_refuses_for_per_seconds() -> None:
    assert take(RateLimit(requests=0, per_seconds=10.0), None, AT) == (None, 10.0)


def test_a_limit_without_a_window_limits_nothing_and_keeps_nothing() -> None:
    assert take(RateLimit(requests=1, per_seconds=0.0), EMPTY, AT) == (None, None)


def test_a_big_limit_is_still_two_numbers() -> None:
    state, _ = take(RateLimit(requests=60_000, per_seconds=60.0), None, AT)
    assert state == Bucket(tokens=59_999.0, at=AT)


def test_buckets_keep_each_key_s_bucket_apart() -> None:
    buckets = Buckets()
    buckets.put("ns/a", EMPTY, ONE_PER_10)
    assert (buckets.get("ns/a"), buckets.get("ns/b")) == (EMPTY, None)


def test_putting_no_bucket_back_forgets_the_key() -> None:
    buckets = Buckets()
    buckets.put("ns/a", EMPTY, ONE_PER_10)
    buckets.put("ns/a", None, ONE_PER_10)
    assert (buckets.get("ns/a"), len(buckets)) == (None, 0)


def test_buckets_full_again_are_forgotten_so_memory_follows_the_receivers_hit_within_per_seconds() -> None:
    buckets = Buckets()
    for i in range(1000):
        buckets.put(f"ns/r{i}", Bucket(tokens=0.0, at=AT + i), ONE_PER_10)
    assert len(buckets) <= 2 * 10 + 1
    assert buckets.get("ns/r999") == Bucket(tokens=0.0, at=AT + 999)
