"""The per-receiver token bucket, with a fake clock."""

from __future__ import annotations

from controller.listener.ratelimit import RateLimiter, retry_after_header
from controller.model import RateLimit


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


TWO_PER_TEN = RateLimit(requests=2, per_seconds=10)


def test_a_full_bucket_allows_a_burst_of_its_size() -> None:
    limiter = RateLimiter(clock=FakeClock())
    assert [limiter.acquire("ns/a", TWO_PER_TEN) for _ in range(2)] == [None, None]


def test_an_empty_bucket_says_how_long_until_the_next_token() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    assert limiter.acquire("ns/a", TWO_PER_TEN) == 5.0


def test_the_bucket_refills_with_time() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 5
    assert limiter.acquire("ns/a", TWO_PER_TEN) is None


def test_a_refused_request_takes_no_token() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now += 5
    assert limiter.acquire("ns/a", TWO_PER_TEN) is None


def test_receivers_have_separate_buckets() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    assert limiter.acquire("ns/b", TWO_PER_TEN) is None


def test_a_changed_limit_starts_a_full_bucket() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.acquire("ns/a", TWO_PER_TEN)
    limiter.acquire("ns/a", TWO_PER_TEN)
    assert limiter.acquire("ns/a", RateLimit(requests=3, per_seconds=10)) is None


def test_a_clock_stepped_back_does_not_drain_the_bucket() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.acquire("ns/a", TWO_PER_TEN)
    clock.now -= 100
    assert limiter.acquire("ns/a", TWO_PER_TEN) is None


def test_memory_is_bounded_by_evicting_the_least_recently_used() -> None:
    limiter = RateLimiter(clock=FakeClock(), max_entries=2)
    for key in ("ns/a", "ns/b", "ns/c"):
        limiter.acquire(key, TWO_PER_TEN)
    assert len(limiter) == 2


def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one() -> None:
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2)] == ["1", "1", "2"]
