"""The listener's summary line: hits counted by outcome, refusals by status and code, a line a minute."""

from __future__ import annotations

import asyncio
import logging

import pytest

from controller.listener.summary import HitSummary, log_summaries


def test_nothing_counted_makes_no_line() -> None:
    assert HitSummary().take(60) is None


def test_a_summary_counts_outcomes_and_refusals() -> None:
    summary = HitSummary()
    for outcome in ("accepted", "accepted", "duplicate"):
        summary.hit(outcome)
    summary.refused(429, "rate_limited")
    assert summary.take(60) == (
        "in the last 60s: 3 hit(s) (2 accepted, 1 duplicate); 1 refused (1 429 rate_limited)"
    )


def test_taking_a_summary_counts_again_from_zero() -> None:
    summary = HitSummary()
    summary.hit("accepted")
    summary.take(60)
    assert summary.take(60) is None


async def test_the_summary_is_logged_at_info_each_interval(caplog: pytest.LogCaptureFixture) -> None:
    summary = HitSummary()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            summary.hit("accepted")
        elif len(waits) == 3:
            raise asyncio.CancelledError

    with (
        caplog.at_level(logging.INFO, logger="controller.listener.summary"),
        pytest.raises(asyncio.CancelledError),
    ):
        await log_summaries(summary, 30.0, sleep=sleep)
    assert waits == [30.0, 30.0, 30.0]
    assert caplog.messages == ["in the last 30s: 1 hit(s) (1 accepted)"]
