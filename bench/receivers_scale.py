"""What the number of receivers costs when nothing happens: 10, 1,000, 10,000 receiver files.

For each count, a fresh state folder and a receivers folder of that many files (one receiver each, each
on its own sandbox service, as receivers usually are), then the service, pinned to its core:

- ready: from the start until ``/readyz`` answers 200 and the store holds a token for every receiver
  (a receiver takes hits once its token is stored);
- RSS once ready, and the CPU the service uses while idle over ``idle_seconds`` (per cent of a core);
- ``/healthz`` latency while idle: one request every 50 ms on a kept-alive connection, p50/p99/max
  (a loop that stalls the event loop shows here);
- a file's change in effect: a new receiver file written, then the time until its trigger URL can be
  read from the store and answers 200.
"""

from __future__ import annotations

import http.client
import sqlite3
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import cpu_time, rss_bytes
from bench.processes import Sandbox, Service, write_receiver
from bench.soak import MAX_SCALE, service_ids
from bench.world import BenchSettings, service_process, start_sandbox, write_up_receivers
from controller.status_report import trigger_url_from_state
from controller.store.base import StoreUnavailable
from controller.store.sqlite_schema import DB_NAME

HEALTHZ_EVERY = 0.05
READY_TIMEOUT = 600.0
CHANGE_TIMEOUT = 60.0
PROBE = "bench-probe"


@dataclass(frozen=True)
class ScaleFigures:
    receivers: int
    ready_s: float
    rss_bytes: int
    idle_cpu_percent: float
    healthz_p50_ms: float
    healthz_p99_ms: float
    healthz_max_ms: float
    change_s: float


def token_count(state: Path, name: str | None = None) -> int:
    try:
        with sqlite3.connect(f"file:{state / DB_NAME}?mode=ro", uri=True, timeout=5) as conn:
            if name is None:
                (n,) = conn.execute("SELECT count(*) FROM tokens").fetchone()
            else:
                (n,) = conn.execute("SELECT count(*) FROM tokens WHERE name = ?", (name,)).fetchone()
    except sqlite3.Error:  # not created yet
        return 0
    return int(n)


def poll(until: Callable[[], bool], timeout: float, what: str, every: float = 0.01) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(every)


def healthz_latencies(port: int, seconds: float) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    samples = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            conn.request("GET", "/healthz")
            answer = conn.getresponse()
            answer.read()
            samples.append(time.perf_counter() - sent)
            time.sleep(HEALTHZ_EVERY)
    finally:
        conn.close()
    return samples


def accepts(url: str) -> bool:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            status: int = answer.status
            return status == 200
    except OSError:
        return False


def change_in_effect(service: Service, receivers: Path, service_id: str) -> float:
    """Seconds from writing a new receiver's file until its trigger URL answers 200."""
    written = time.monotonic()
    write_receiver(receivers, PROBE, service=service_id, high=MAX_SCALE)
    poll(lambda: token_count(service.state, PROBE) > 0, CHANGE_TIMEOUT, f"a token for {PROBE}")
    url: str | None = None

    def live() -> bool:
        nonlocal url
        if url is None:
            try:
                url = trigger_url_from_state(service.state, "default", PROBE, service.base)
            except StoreUnavailable:
                return False
        return url is not None and accepts(url)

    poll(live, CHANGE_TIMEOUT, f"{PROBE} answering 200")
    return time.monotonic() - written


def measure(tmp: Path, settings: BenchSettings, count: int) -> ScaleFigures:
    folder = tmp / f"scale-{count}"
    services = service_ids(count)
    receivers = folder / "receivers"
    write_up_receivers(receivers, services)
    sandbox: Sandbox = start_sandbox(folder.parent, count)
    try:
        service = service_process(
            tmp, settings, receivers=receivers, state=folder / "state", cattle_url=sandbox.url
        )
        started = time.monotonic()
        service.start()
        try:
            service.wait_http(f"{service.base}/readyz", timeout=READY_TIMEOUT)
            poll(lambda: token_count(service.state) >= count, READY_TIMEOUT, f"{count} tokens", every=0.05)
            ready = time.monotonic() - started
            time.sleep(min(2.0, settings.idle_seconds))  # let the start-up's tail (first reconcile pass) pass
            rss = rss_bytes(service.pid)
            before, t0 = cpu_time(service.pid), time.monotonic()
            time.sleep(settings.idle_seconds)
            idle = (cpu_time(service.pid) - before).total_ns / 1e9 / (time.monotonic() - t0) * 100
            latencies = healthz_latencies(service.port, settings.idle_seconds)
            change = change_in_effect(service, receivers, services[0])
        finally:
            service.stop()
    finally:
        sandbox.stop()
    ms = sorted(x * 1000 for x in latencies)
    return ScaleFigures(
        receivers=count,
        ready_s=ready,
        rss_bytes=rss,
        idle_cpu_percent=idle,
        healthz_p50_ms=statistics.median(ms),
        healthz_p99_ms=ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))],
        healthz_max_ms=ms[-1],
        change_s=change,
    )
