"""The intent fold: order, clamping with each intent's own bounds, and what each step records."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from controller.fold import fold, step
from controller.model import ScaleIntent
from controller.store.base import PendingIntent


def pending(*intents: ScaleIntent) -> list[PendingIntent]:
    return [
        PendingIntent(seq=i, hit_id=f"h{i}", receiver="default/r", intent=x.to_json())
        for i, x in enumerate(intents)
    ]


UP = ScaleIntent("up", 1, 0, 1000)
DOWN = ScaleIntent("down", 1, 0, 1000)


def test_up_and_down_steps_add_up() -> None:
    assert fold(500, pending(*([UP] * 200 + [DOWN] * 100)))[0] == 600


def test_a_step_past_max_lands_on_max_and_is_marked_clamped() -> None:
    desired, steps = fold(9, pending(ScaleIntent("up", 3, 1, 10)))
    assert desired == 10
    assert (steps[0].before, steps[0].after, steps[0].clamped) == (9, 10, True)


def test_a_step_below_min_lands_on_min() -> None:
    assert fold(2, pending(ScaleIntent("down", 5, 1, 10)))[0] == 1


def test_each_intent_uses_its_own_bounds() -> None:
    desired, steps = fold(5, pending(ScaleIntent("up", 5, 1, 6), ScaleIntent("up", 5, 1, 20)))
    assert [s.after for s in steps] == [6, 11]
    assert desired == 11


def test_order_matters_at_the_bounds() -> None:
    up_then_down = fold(10, pending(ScaleIntent("up", 1, 0, 10), ScaleIntent("down", 1, 0, 10)))[0]
    down_then_up = fold(10, pending(ScaleIntent("down", 1, 0, 10), ScaleIntent("up", 1, 0, 10)))[0]
    assert (up_then_down, down_then_up) == (9, 10)


def test_steps_chain_before_to_after() -> None:
    _, steps = fold(3, pending(UP, UP, DOWN))
    assert [(s.before, s.after) for s in steps] == [(3, 4), (4, 5), (5, 4)]
    assert [s.hit_id for s in steps] == ["h0", "h1", "h2"]


intents = st.builds(
    lambda action, amount, low, span: ScaleIntent(action, amount, low, low + span),
    st.sampled_from(["up", "down"]),
    st.integers(1, 20),
    st.integers(0, 50),
    st.integers(0, 50),
)


@given(st.integers(0, 200), st.lists(intents, max_size=40))
def test_fold_equals_stepwise_application(start: int, items: list[ScaleIntent]) -> None:
    expected = start
    for intent in items:
        expected = step(expected, intent)[0]
    assert fold(start, pending(*items))[0] == expected


@given(st.integers(0, 200), st.lists(intents, min_size=1, max_size=40))
def test_every_step_ends_inside_its_own_bounds(start: int, items: list[ScaleIntent]) -> None:
    _, steps = fold(start, pending(*items))
    for s, intent in zip(steps, items, strict=True):
        assert intent.min <= s.after <= intent.max


@given(st.integers(0, 100), st.integers(0, 100), st.integers(0, 100))
def test_unclamped_ups_and_downs_are_exact(start: int, ups: int, downs: int) -> None:
    wide = [ScaleIntent("up", 1, 0, 10_000)] * ups + [ScaleIntent("down", 1, 0, 10_000)] * downs
    desired, steps = fold(start + 100, pending(*wide))
    assert desired == start + 100 + ups - downs
    assert not any(s.clamped for s in steps)
