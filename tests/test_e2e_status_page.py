"""The status page end to end: real hits of several receivers, Cattle down for a while and back, then
the page as a browser renders it (headless Chromium's DOM and a screenshot) and ``status -o json``,
which must agree with it."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.processes import Sandbox, Service, run_cli, sandbox_scale, write_receiver, write_seed
from tests.status_samples import Dom
from tests.toolbox import until

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
WEB, WORKER = "scaleService:1a5/1s7", "scaleService:1a5/1s8"


async def accepted(url: str) -> bool:
    async with aiohttp.ClientSession() as session, session.post(url) as answer:
        return answer.status == 200 and (await answer.json())["outcome"] == "accepted"


def status_json(service: Service) -> dict[str, Any]:
    answer = run_cli("status", "--state", str(service.state), "-o", "json")
    assert answer.returncode == 0, answer.stderr
    view: dict[str, Any] = json.loads(answer.stdout)
    return view


def shown(service: Service, target_id: str) -> dict[str, str]:
    """A target's section on the page as served (cheaper to poll than the CLI)."""
    with urllib.request.urlopen(f"{service.base}/", timeout=5) as answer:
        sections = Dom(answer.read().decode()).find("section", "target", target=target_id)
    return sections[0].attrs if sections else {}


def settled(service: Service) -> bool:
    return all(shown(service, t).get("data-converged") == "true" for t in (WEB, WORKER))


def browse(url: str, screenshot: Path) -> Dom:
    """The page's DOM after Chromium rendered it, and its screenshot (kept with the test's files)."""
    if not CHROMIUM.exists():
        pytest.fail("the status page test needs Chromium: install Debian's `chromium` package (.ci/run does)")
    answer = subprocess.run(
        [
            str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
            f"--screenshot={screenshot}", "--window-size=1280,2000", url,
        ],
        capture_output=True, text=True, timeout=60, cwd=screenshot.parent,
    )  # fmt: skip
    assert answer.returncode == 0 and answer.stdout, answer.stderr
    return Dom(answer.stdout)


def changes(values: list[str]) -> list[int]:
    """The values a series took, each once per change."""
    out: list[int] = []
    for v in values:
        if v and (not out or out[-1] != int(v)):
            out.append(int(v))
    return out


async def test_the_page_shows_each_targets_scale_over_hits_and_a_cattle_outage(tmp_path: Path) -> None:
    receivers = tmp_path / "receivers"
    receivers.mkdir()
    write_receiver(receivers, "web-up", service="1s7")
    write_receiver(receivers, "worker-up", service="1s8")
    seed = write_seed(tmp_path / "seed.yaml")
    sandbox = Sandbox(tmp_path, seed).start_and_wait()
    service = Service(tmp_path, receivers=receivers, state=tmp_path / "state", cattle_url=sandbox.url)
    try:
        service.start_and_wait()
        web, worker = service.trigger_url("web-up"), service.trigger_url("worker-up")
        assert await accepted(web)
        await until(lambda: sandbox_scale(sandbox) == 2, what="web at 2")
        assert await accepted(web) and await accepted(worker)
        await until(lambda: settled(service), what="both targets converged at 3")
        assert (sandbox_scale(sandbox), sandbox_scale(sandbox, "1s8")) == (3, 3)

        write_seed(seed, scale=3, worker=3)  # Cattle comes back as it was
        sandbox.stop()
        assert await accepted(web)
        await until(lambda: "error" in shown(service, WEB).get("data-state", ""), what="web in error")
        sandbox.start()  # down while it starts again: a few seconds
        sandbox.wait_http(sandbox.url)
        await until(lambda: settled(service), within=20, what="both targets converged after Cattle returned")
        assert sandbox_scale(sandbox) == 4

        dom = browse(f"{service.base}/", tmp_path / "status-page.png")
        view = status_json(service)
    finally:
        service.stop()
        sandbox.stop()

    assert (tmp_path / "status-page.png").stat().st_size > 0
    sections = {s.attrs["data-target"]: s for s in dom.find("section", "target")}
    assert set(sections) == {t["id"] for t in view["targets"]} == {WEB, WORKER}
    for t in view["targets"]:  # the page and `status -o json` agree
        attrs = sections[t["id"]].attrs
        assert (attrs["data-desired"], attrs["data-observed"], attrs["data-converged"]) == (
            str(t["desired"]),
            str(t["observed"]),
            str(t["converged"]).lower(),
        )

    web_chart = dom.within(WEB)
    points = web_chart.find("circle", "point")
    assert changes([p.attrs["data-desired"] for p in points]) == [2, 3, 4]
    assert (points[-1].attrs["data-observed"], points[-1].attrs["data-converged"]) == ("4", "true")
    assert [b for b in web_chart.find("rect", "band") if "error" in b.classes and b.attrs["data-error"]]
    assert len(web_chart.find("line", "hit")) == 3
    assert changes([p.attrs["data-desired"] for p in dom.within(WORKER).find("circle", "point")]) == [3]
    assert len(dom.within(WORKER).find("line", "hit")) == 1
