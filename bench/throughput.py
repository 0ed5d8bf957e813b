"""Durable hits against a bare aiohttp handler, at each connection count; then exactly-once and storage.

One receiver (step 1, max 10^9) on one sandbox service. For each connection count, ``rounds``
alternating rounds: wrk against the bare server, then against the service, so a drift in the
machine's speed hits both alike. Per service round: answers 200 per second, p50/p99, non-2xx answers
and the service's own CPU time per accepted hit (event-loop thread and the others).

Then storage: wrk at 32 connections until the store holds ``storage_hits`` hits, and the database's
size over its hits once the service has stopped and the WAL is checkpointed.

Exactly once, which fails the run loudly: once the sandbox has settled, its scale is its initial one
plus the accepted hits in the store, every accepted hit's intent is folded, and the accepted hits in
the store are those wrk counted, give or take a request per connection still in flight when a round
ended (wrk stops counting then; the service may still accept them).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bench.cpu import CpuTime, cpu_time
from bench.soak import START_SCALE, service_ids
from bench.world import (
    BenchSettings,
    await_scales,
    database_bytes,
    path_of,
    start_bare,
    start_sandbox,
    start_service,
    store_counts,
    write_up_receivers,
)
from bench.wrk import Wrk, WrkResult

STORAGE_CONNECTIONS = 32
Progress = Callable[[str], None]
CpuPart = Literal["total", "loop", "other"]  # all threads, the event loop's, the others


@dataclass(frozen=True)
class Round:
    bare: WrkResult
    service: WrkResult
    service_cpu: CpuTime
    bare_cpu: CpuTime

    @property
    def ratio(self) -> float:
        return self.service.rate / self.bare.rate if self.bare.rate else 0.0


@dataclass(frozen=True)
class ConnectionFigures:
    connections: int
    rounds: tuple[Round, ...]

    @property
    def hits_per_s(self) -> float:
        return statistics.median([r.service.rate for r in self.rounds])

    @property
    def bare_per_s(self) -> float:
        return statistics.median([r.bare.rate for r in self.rounds])

    @property
    def ratio(self) -> float:
        return statistics.median([r.ratio for r in self.rounds])

    @property
    def ratio_range(self) -> tuple[float, float]:
        return min(r.ratio for r in self.rounds), max(r.ratio for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median([r.service.p50_ms for r in self.rounds])

    @property
    def p99_ms(self) -> float:
        return statistics.median([r.service.p99_ms for r in self.rounds])

    @property
    def bare_p99_ms(self) -> float:
        return statistics.median([r.bare.p99_ms for r in self.rounds])

    def cpu_us_per_hit(self, part: CpuPart = "total") -> float:
        per_round = []
        for r in self.rounds:
            ns = {
                "total": r.service_cpu.total_ns,
                "loop": r.service_cpu.loop_ns,
                "other": r.service_cpu.other_ns,
            }
            per_round.append(ns[part] / 1000 / max(r.service.ok, 1))
        return statistics.median(per_round)

    @property
    def bare_cpu_us(self) -> float:
        return statistics.median([r.bare_cpu.total_ns / 1000 / max(r.bare.ok, 1) for r in self.rounds])

    @property
    def cpu_ratio(self) -> float:
        """Bare CPU per request over the service's CPU per hit: the ratio the service would reach were
        CPU its only limit; it holds up better than hits/s when other work shares the machine."""
        service = self.cpu_us_per_hit()
        return self.bare_cpu_us / service if service else 0.0

    @property
    def not_2xx(self) -> int:
        return sum(r.service.not_2xx + r.service.socket_errors for r in self.rounds)

    @property
    def bare_not_2xx(self) -> int:
        return sum(r.bare.not_2xx + r.bare.socket_errors for r in self.rounds)


@dataclass
class ThroughputReport:
    figures: list[ConnectionFigures] = field(default_factory=list)
    wrk_accepted: int = 0  # answers 200 wrk counted, all rounds
    in_flight_allowance: int = 0  # connections summed over the service's runs
    store_accepted: int = 0
    folded: int = 0
    final_scale: int = 0
    storage_hits: int = 0
    storage_bytes: int = 0

    @property
    def bytes_per_hit(self) -> float:
        return self.storage_bytes / self.storage_hits if self.storage_hits else 0.0

    def exactly_once_problems(self) -> list[str]:
        problems = []
        if self.final_scale != START_SCALE + self.store_accepted:
            problems.append(
                f"Cattle's scale is {self.final_scale}, "
                f"not {START_SCALE} + {self.store_accepted} accepted hits"
            )
        if self.folded != self.store_accepted:
            problems.append(f"{self.folded} intents folded for {self.store_accepted} accepted hits")
        if not self.wrk_accepted <= self.store_accepted <= self.wrk_accepted + self.in_flight_allowance:
            problems.append(
                f"the store holds {self.store_accepted} accepted hits; "
                f"wrk counted {self.wrk_accepted} answers 200 "
                f"(+ at most {self.in_flight_allowance} in flight)"
            )
        return problems


def measure_round(
    wrk: Wrk, base: str, paths: Sequence[str], pid: int, *, connections: int, seconds: float, prefix: str
) -> tuple[WrkResult, CpuTime]:
    before = cpu_time(pid)
    result = wrk.run(base, paths, connections=connections, seconds=seconds, prefix=prefix)
    return result, cpu_time(pid) - before


def run_throughput(tmp: Path, settings: BenchSettings, wrk: Wrk, progress: Progress) -> ThroughputReport:
    report = ThroughputReport()
    sandbox = start_sandbox(tmp, 1)
    (sid,) = service_ids(1)
    receivers = tmp / "throughput-receivers"
    (name,) = write_up_receivers(receivers, [sid])
    state = tmp / "throughput-state"
    bare = start_bare(tmp, settings)
    try:
        service = start_service(tmp, settings, receivers=receivers, state=state, cattle_url=sandbox.url)
        try:
            service_path = [path_of(service.trigger_url(name))]
            bare_path = ["/v1-webhooks/endpoint"]

            def service_run(connections: int, seconds: float, prefix: str) -> tuple[WrkResult, CpuTime]:
                result, cpu = measure_round(
                    wrk,
                    service.base,
                    service_path,
                    service.pid,
                    connections=connections,
                    seconds=seconds,
                    prefix=prefix,
                )
                report.wrk_accepted += result.ok
                report.in_flight_allowance += connections
                return result, cpu

            # Warm-up: connections, caches, the first pages of the database.
            wrk.run(bare.base, bare_path, connections=32, seconds=2, prefix="warm-bare")
            service_run(32, 2, "warm")
            for connections in settings.connections:
                rounds = []
                for n in range(1, settings.rounds + 1):
                    bare_result, bare_cpu = measure_round(
                        wrk,
                        bare.base,
                        bare_path,
                        bare.pid,
                        connections=connections,
                        seconds=settings.seconds,
                        prefix=f"bare-{connections}-{n}",
                    )
                    result, cpu = service_run(connections, settings.seconds, f"c{connections}-r{n}")
                    rounds.append(Round(bare_result, result, cpu, bare_cpu))
                    progress(
                        f"{connections:4d} connections, round {n}: bare {bare_result.rate:7.0f} req/s, "
                        f"service {result.rate:7.0f} hits/s, ratio {rounds[-1].ratio:.2f}, "
                        f"{cpu.total_ns / 1000 / max(result.ok, 1):.0f} µs/hit"
                    )
                report.figures.append(ConnectionFigures(connections, tuple(rounds)))
            bare.stop()
            counts = store_counts(state)
            while counts.hits < settings.storage_hits:
                rate = max(report.figures[-1].hits_per_s if report.figures else 0.0, 100.0)
                seconds = min(max((settings.storage_hits - counts.hits) / rate * 1.1, 1.0), 60.0)
                service_run(STORAGE_CONNECTIONS, seconds, f"fill-{counts.hits}")
                counts = store_counts(state)
                progress(f"storage: {counts.hits} hits in the store")
            settled = await_scales(
                sandbox, [sid], lambda s: s[sid] == START_SCALE + store_counts(state).accepted
            )
            report.final_scale = settled[sid]
            counts = store_counts(state)
            report.store_accepted, report.folded = counts.accepted, counts.folded
            report.storage_hits = counts.hits
        finally:
            service.stop()
        report.storage_bytes = database_bytes(state)
    finally:
        bare.stop()
        sandbox.stop()
    return report
