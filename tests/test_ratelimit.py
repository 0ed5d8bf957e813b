"""The listener's rate limit of pass-through hits (the bucket's arithmetic is the outcome rule's)."""

from __future__ import annotations

import pytest

from controller.listener.ratelimit import RateLimiter, retry_after_header
from controller.model import RateLimit
from tests.toolbox import FakeClock

TWO_PER_TEN = RateLimit(requests=2, per_seconds=10)


def test_a_burst_of_the_limit_s_size_is_let_through() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert [limiter.acquire("ns/a", TWO_PER_TEN) for _ in range(2)] == [None, None]


def test_over_the_limit_says_how_long_until_a_token_is_there() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 1
    assert limiter.acquire("ns/a", TWO_PER_TEN) == pytest.approx(4.0)


def test_a_hit_is_let_through_once_a_token_refilled() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 5
    assert limiter.acquire("ns/a", TWO_PER_TEN) is None
    assert limiter.acquire("ns/a", TWO_PER_TEN) is not None


def test_a_refused_hit_is_not_counted() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 2
    assert limiter.acquire("ns/a", TWO_PER_TEN) is not None  # refused
    clock.now += 3
    assert limiter.acquire("ns/a", TWO_PER_TEN) is None


def test_receivers_are_counted_apart() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    assert limiter.acquire("ns/b", TWO_PER_TEN) is None


def test_a_raised_limit_refills_faster() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 2.5
    assert limiter.acquire("ns/a", TWO_PER_TEN) is not None
    assert limiter.acquire("ns/a", RateLimit(requests=4, per_seconds=10)) is None


def test_a_receiver_whose_bucket_is_full_again_is_forgotten() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    for key in ("ns/a", "ns/b"):
        limiter.acquire(key, TWO_PER_TEN)
    clock.now += 10
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/b", RateLimit(requests=0, per_seconds=10))
    assert len(limiter) == 1


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]
