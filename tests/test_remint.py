"""The re-mint rule both token keepers follow (standalone store, operator Secrets), case by case."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from controller.model import Receiver
from controller.receivers.remint import Issued, remint_reason
from tests.test_receivers_sync import receiver

ISSUED = Issued(
    jti="j1",
    kid="k1",
    uid="u1",
    target_id="scaleService:1a5/1s7",
    token_generation="",
    driver="scaleService",
)
KIDS = frozenset({"k1", "k2"})


def issued(**changes: Any) -> Issued:
    return dataclasses.replace(ISSUED, **changes)


CASES: list[tuple[str, Issued | None, Receiver, frozenset[str], str | None]] = [
    ("nothing changed", ISSUED, receiver(uid="u1"), KIDS, None),
    ("an edit of the amount", ISSUED, receiver(uid="u1", amount=3), KIDS, None),
    ("a keeper that does not record the driver", issued(driver=None), receiver(uid="u1"), KIDS, None),
    ("a receiver without a uid yet (standalone)", ISSUED, receiver(), KIDS, None),
    ("no token yet", None, receiver(uid="u1"), KIDS, "no token yet"),
    (
        "another driver",
        issued(driver="forwardPost"),
        receiver(uid="u1"),
        KIDS,
        "driver changed from forwardPost to scaleService",
    ),
    (
        "another target",
        ISSUED,
        receiver(uid="u1", service="1s8"),
        KIDS,
        "target changed from scaleService:1a5/1s7 to scaleService:1a5/1s8",
    ),
    (
        "another driver is named before the target change it brings",
        issued(driver="forwardPost", target_id="forwardPost:1a5/web:80"),
        receiver(uid="u1"),
        KIDS,
        "driver changed from forwardPost to scaleService",
    ),
    (
        "another token generation",
        ISSUED,
        receiver(uid="u1", generation="2"),
        KIDS,
        "token generation changed",
    ),
    (
        "a re-created receiver (another uid)",
        ISSUED,
        receiver(uid="u2"),
        KIDS,
        "uid changed (the receiver was re-created)",
    ),
    (
        "a signing key gone from the key ring",
        ISSUED,
        receiver(uid="u1"),
        frozenset({"k2"}),
        "its signing key k1 is no longer in the key ring",
    ),
]


@pytest.mark.parametrize(
    ("issued_", "now", "kids", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_reason_to_remint(
    issued_: Issued | None, now: Receiver, kids: frozenset[str], expected: str | None
) -> None:
    assert remint_reason(issued_, now, kids) == expected
