"""The status view's rules, on a store status made by hand (``tests.status_samples``), and its renderings
as tables and data (``status``, ``status -o json|yaml``, ``status --watch``)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

from controller.drivers import load_drivers
from controller.status.text import render_text
from controller.status.view import TargetView, epoch, iso
from controller.status_report import render, snapshot_view, watch
from controller.store.base import CATTLE_PROBLEM_META
from controller.store.sqlite_snapshot import Snapshot
from tests.status_samples import (
    ERROR,
    GONE,
    GONE_PENDING,
    IDLE,
    NOW,
    SCALE,
    T0,
    UPGRADE,
    sample_view,
    store_status,
)


def target(target_id: str) -> TargetView:
    return next(t for t in sample_view()["targets"] if t["id"] == target_id)


def test_a_target_whose_receivers_are_gone_and_nothing_pending_is_left_out() -> None:
    assert GONE not in [t["id"] for t in sample_view()["targets"]]


def test_a_target_whose_receivers_are_gone_stays_while_an_intent_is_pending() -> None:
    assert (target(GONE_PENDING)["pending"], target(GONE_PENDING)["converged"]) == (1, False)


def test_a_target_nothing_was_asked_of_is_new_not_converged() -> None:
    assert (target(IDLE)["state"], target(IDLE)["converged"]) == ("new", False)


def test_a_confirmed_desired_value_is_converged() -> None:
    scale = target(SCALE)
    assert (scale["desired"], scale["observed"], scale["state"], scale["converged"]) == (
        3,
        3,
        "converged",
        True,
    )


def test_an_error_is_not_converged_and_shows_the_error() -> None:
    status = store_status()
    status.targets[0] = dataclasses.replace(status.targets[0], converged=True, last_error=ERROR)
    scale = next(t for t in sample_view(status)["targets"] if t["id"] == SCALE)
    assert (scale["state"], scale["converged"], scale["last_error"]) == ("error", False, ERROR)


def test_a_desired_value_not_yet_confirmed_is_pending() -> None:
    status = store_status()
    status.targets[0] = dataclasses.replace(status.targets[0], desired=4, converged=False)
    scale = next(t for t in sample_view(status)["targets"] if t["id"] == SCALE)
    assert (scale["state"], scale["does"]) == ("pending", "scale 3 -> 4")


def test_a_history_point_in_error_is_not_converged() -> None:
    points = target(SCALE)["history"]
    assert [(p["desired"], p["converged"], p["error"]) for p in points] == [
        (2, False, None),
        (2, True, None),
        (3, False, ERROR),
        (3, True, None),
    ]


def test_a_service_upgrade_target_says_what_it_rolls_out_and_no_scale() -> None:
    upgrade = target(UPGRADE)
    assert (upgrade["kind"], upgrade["does"]) == ("apply", "roll out registry.example/web:1.2")
    assert (upgrade["desired"], upgrade["observed"]) == (None, None)
    assert all(p["desired"] is None and p["observed"] is None for p in upgrade["history"])


def test_a_target_gets_its_own_hits_oldest_first() -> None:
    assert [h["hit_id"] for h in target(SCALE)["hits"]] == ["h1", "h2", "h3"]


def test_receivers_show_their_last_hit_and_outcome() -> None:
    web_up = next(r for r in sample_view()["receivers"] if r["name"] == "default/web-up")
    assert (web_up["last_hit_at"], web_up["last_outcome"]) == (iso(T0 + 20), "cooldown: cooling down")


def test_the_cattle_label_is_masked() -> None:
    view = sample_view(cattle_label="http://ak:s3cret@rancher:8080/v2-beta")
    assert view["cattle"]["label"] == "http://****:****@rancher:8080/v2-beta"


def test_credentials_in_an_error_are_masked() -> None:
    status = store_status()
    status.targets[0] = dataclasses.replace(
        status.targets[0], last_error="GET http://ak:s3cret@rancher/v2-beta failed"
    )
    assert "s3cret" not in json.dumps(sample_view(status))


def test_status_shows_the_cattle_problem_the_service_noted() -> None:
    snapshot = Snapshot(
        tokens=[], status=store_status(), problems=[], meta={CATTLE_PROBLEM_META: "Cattle answers 401"}
    )
    view = snapshot_view(snapshot, load_drivers(), NOW)
    assert view["cattle"]["problem"] == "Cattle answers 401"
    assert (
        render_text(view).splitlines()[0]
        == "Cattle: unknown (the service has not started yet) (Cattle answers 401)"
    )


def test_times_are_iso_to_the_millisecond_and_read_back() -> None:
    assert (iso(T0 + 0.25), epoch(iso(T0 + 0.25))) == ("2027-01-15T08:00:00.250Z", T0 + 0.25)


def test_json_output_is_the_view_itself() -> None:
    view = sample_view()
    assert json.loads(render(view, "json")) == view
    assert json.loads(render(view, "json", one_line=True)) == view
    assert "\n" not in render(view, "json", one_line=True)


def test_yaml_output_is_the_view_itself() -> None:
    view = sample_view()
    assert yaml.safe_load(render(view, "yaml")) == view


def test_the_tables_keep_their_columns_and_say_what_an_upgrade_rolls_out() -> None:
    lines = render_text(sample_view()).splitlines()
    header = next(line for line in lines if line.strip().startswith("TARGET "))
    assert header.split() == [
        "TARGET",
        "DESIRED",
        "OBSERVED",
        "PENDING",
        "CONVERGED",
        "LAST",
        "ERROR",
        "DOES",
    ]
    upgrade = next(line for line in lines if line.strip().startswith(UPGRADE))
    assert "roll out registry.example/web:1.2" in upgrade
    assert upgrade.split()[1:3] == ["-", "-"]  # no desired or observed scale


def test_watch_writes_the_view_only_when_it_changed() -> None:
    later, changed = sample_view(), sample_view()
    later["generated_at"] = iso(NOW + 2)
    changed["targets"][0]["pending"] = 7
    views = [sample_view(), later, changed]
    written: list[str] = []
    reads = iter(views)

    def sleep(_: float) -> None:
        if len(written) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        watch(lambda: next(reads), "json", written.append, interval=1.0, sleep=sleep)
    assert [json.loads(w)["targets"][0]["pending"] for w in written] == [views[0]["targets"][0]["pending"], 7]
