"""The status page's HTML: a chart per target whose marks carry their values, everything escaped, no
secret, and served at ``/`` next to ``/metrics`` by the running service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from controller.drivers import load_drivers
from controller.listener.app import LISTENER_DEPS
from controller.metrics import Metrics
from controller.model import ActiveReceiver, Problem, Receiver
from controller.receiver_set import ReceiverSet
from controller.settings import Settings
from controller.status.page import render_page
from controller.status.view import iso
from controller.store.sqlite import SqliteStore
from controller.tokens import KeyRing, TokenVerifier, mint_token
from controller.wiring import Wiring, wire
from tests.processes import free_port
from tests.specs import receiver_spec
from tests.status_samples import ERROR, HOSTILE, SCALE, T0, UPGRADE, Dom, sample_view

AiohttpClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
def page() -> Dom:
    return Dom(render_page(sample_view()))


def test_each_target_has_a_chart(page: Dom) -> None:
    charts = {svg.attrs["data-target"] for svg in page.find("svg", "chart")}
    assert SCALE in charts and UPGRADE in charts


def test_a_chart_has_a_point_per_change_with_its_values(page: Dom) -> None:
    points = page.within(SCALE).find("circle", "point")
    assert [
        (p.attrs["data-desired"], p.attrs["data-observed"], p.attrs["data-converged"]) for p in points
    ] == [
        ("2", "1", "false"),
        ("2", "2", "true"),
        ("3", "2", "false"),
        ("3", "3", "true"),
    ]
    assert points[0].attrs["data-at"] == iso(T0 + 0.5)


def test_a_scale_chart_draws_desired_and_observed_as_step_lines(page: Dom) -> None:
    chart = page.within(SCALE)
    assert len(chart.find("path", "desired")) == 1 and len(chart.find("path", "observed")) == 1
    assert all(c in "MHV0123456789.,-" for c in chart.find("path", "desired")[0].attrs["d"])


def test_periods_not_converged_are_bands_and_an_error_band_says_so(page: Dom) -> None:
    bands = page.within(SCALE).find("rect", "band")
    assert [(b.attrs["data-from"], b.attrs["data-to"], "error" in b.classes) for b in bands] == [
        (iso(T0 + 0.5), iso(T0 + 1), False),
        (iso(T0 + 10.5), iso(T0 + 40), True),
    ]
    assert bands[1].attrs["data-error"] == ERROR


def test_accepted_hits_are_marked_and_others_are_not(page: Dom) -> None:
    marks = page.within(SCALE).find("line", "hit")
    assert [(m.attrs["data-hit"], m.attrs["data-receiver"]) for m in marks] == [
        ("h1", "default/web-up"),
        ("h2", "default/web-up"),
    ]


def test_a_service_upgrade_says_what_it_rolls_out_without_scale_words(page: Dom) -> None:
    section = page.within(UPGRADE)
    texts = [e.text for e in section.elements if e.tag in ("th", "td")]
    assert "roll out registry.example/web:1.2" in texts
    assert "Desired" not in texts and "Observed" not in texts
    assert section.find("path", "desired") == []


def test_a_hostile_receiver_name_is_escaped() -> None:
    html = render_page(sample_view())
    assert "<script>" not in html
    assert HOSTILE in [e.text for e in Dom(html).find("td")]


def test_the_page_needs_no_script_and_nothing_from_elsewhere() -> None:
    html = render_page(sample_view())
    assert "<script" not in html and "src=" not in html and "href=" not in html
    assert '<meta http-equiv="refresh"' in html


def test_credentials_in_the_cattle_url_are_not_shown() -> None:
    html = render_page(sample_view(cattle_label="http://ak:s3cret@rancher:8080/v2-beta"))
    assert "s3cret" not in html and "ak:" not in html


SPEC = receiver_spec(
    "scaleService", {"projectId": "1a5", "serviceId": "1s7", "action": "up", "amount": 1, "min": 1, "max": 10}
)


def live(tmp_path: Path, **settings: object) -> tuple[Wiring, str]:
    """The wiring with one receiver, and that receiver's token."""
    keyring = KeyRing.load_or_create(tmp_path / "keys")
    drivers = load_drivers()
    receiver = Receiver(
        namespace="default",
        name="web-up",
        driver="scaleService",
        spec=SPEC,
        target=drivers["scaleService"].target(SPEC, "default"),
    )
    token, kid = mint_token(keyring, receiver=receiver, uid="uid-1", jti="jti-1", now=T0)
    receiver_set = ReceiverSet()
    receiver_set.put(ActiveReceiver(receiver=receiver, uid="uid-1", jti="jti-1", token=token, kid=kid))
    receiver_set.loaded = True
    wiring = wire(
        Settings(state_dir=tmp_path, cattle_url="http://ak:s3cret@rancher:8080/v2-beta", **settings),  # type: ignore[arg-type]
        store=SqliteStore(tmp_path / "state.db"),
        receiver_set=receiver_set,
        verifier=TokenVerifier(keyring),
        drivers=drivers,
        metrics=Metrics(),
        wake=lambda _: None,
    )
    return wiring, token


async def test_the_service_serves_the_page_at_the_root(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    wiring, token = live(tmp_path)
    client = await aiohttp_client(wiring.app)
    answer = await client.get("/")
    html = await answer.text()
    assert (answer.status, answer.content_type) == (200, "text/html")
    assert "default/web-up" in [e.text for e in Dom(html).find("td")]
    assert token not in html and "s3cret" not in html and "key=" not in html


async def test_the_page_answers_head(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(live(tmp_path)[0].app)
    assert (await client.head("/")).status == 200


async def test_other_paths_keep_their_json_404(tmp_path: Path, aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(live(tmp_path)[0].app)
    answer = await client.get("/status")
    assert (answer.status, answer.content_type) == (404, "application/json")


async def test_with_a_metrics_port_the_page_is_served_there_only(tmp_path: Path) -> None:
    port = free_port()
    wiring, _ = live(
        tmp_path, listen_host="127.0.0.1", listen_port=0, metrics_host="127.0.0.1", metrics_port=port
    )
    async with wiring.serving() as runner, aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{runner.addresses[0][1]}/") as answer:
            assert answer.status == 404  # not on the port senders reach
        async with session.get(f"http://127.0.0.1:{port}/") as answer:
            assert answer.status == 200 and "default/web-up" in await answer.text()


async def test_the_page_shows_why_cattle_and_other_parts_are_degraded(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    wiring, _ = live(tmp_path)
    wiring.health.add("cattle", lambda: "Cattle answers 401: check the API keys")
    wiring.health.add_note("manifests", lambda: "1 receiver manifest problem(s)")
    client = await aiohttp_client(wiring.app)
    store = wiring.app[LISTENER_DEPS].store
    assert isinstance(store, SqliteStore)
    await store.set_problems([Problem("spec.driver", "unknown driver", file="bad.yaml")])
    dom = Dom(await (await client.get("/")).text())
    assert [e.text for e in dom.find("span", "bad")] == ["Cattle answers 401: check the API keys"]
    problems = [e.text for e in dom.find("li")]
    assert problems[0] == "manifests: 1 receiver manifest problem(s)"
    assert len(problems) == 2 and "unknown driver" in problems[1] and "bad.yaml" in problems[1]
