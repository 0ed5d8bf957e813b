"""What a hit costs when many targets are busy: one service, ``busy_targets`` receivers on as many
sandbox services, wrk at 32 connections first on one receiver, then on all of them round-robin.

Each reconcile pass has a cost of its own besides the hits it folds, so CPU per hit grows with the
number of targets that have pending hits; the ratio of the two figures shows by how much. The run
ends with the same exactly-once check as the throughput run: the scales' growth over all services
equals the accepted hits in the store, and every one is folded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.soak import START_SCALE, service_ids
from bench.throughput import measure_round
from bench.world import (
    BenchSettings,
    await_scales,
    path_of,
    start_sandbox,
    start_service,
    store_counts,
    write_up_receivers,
)
from bench.wrk import Wrk
from controller.status_report import trigger_url_from_state

CONNECTIONS = 32


@dataclass(frozen=True)
class ReconcileFigures:
    targets: int
    hits_per_s: float
    cpu_us_per_hit: float
    p99_ms: float


@dataclass(frozen=True)
class ReconcileReport:
    one: ReconcileFigures
    many: ReconcileFigures
    problems: tuple[str, ...]

    @property
    def growth(self) -> float:
        return self.many.cpu_us_per_hit / self.one.cpu_us_per_hit if self.one.cpu_us_per_hit else 0.0


def run_reconcile(tmp: Path, settings: BenchSettings, wrk: Wrk) -> ReconcileReport:
    services = service_ids(settings.busy_targets)
    sandbox = start_sandbox(tmp, settings.busy_targets)
    receivers = tmp / "reconcile-receivers"
    names = write_up_receivers(receivers, services)
    state = tmp / "reconcile-state"
    try:
        service = start_service(tmp, settings, receivers=receivers, state=state, cattle_url=sandbox.url)
        try:
            paths = []
            for name in names:
                url = trigger_url_from_state(state, "default", name, service.base)
                if url is None:
                    raise RuntimeError(f"no trigger URL for {name} in {state}")
                paths.append(path_of(url))
            figures = []
            for targets in (1, len(paths)):
                result, cpu = measure_round(
                    wrk,
                    service.base,
                    paths[:targets],
                    service.pid,
                    connections=CONNECTIONS,
                    seconds=settings.reconcile_seconds,
                    prefix=f"targets-{targets}",
                )
                figures.append(
                    ReconcileFigures(
                        targets, result.rate, cpu.total_ns / 1000 / max(result.ok, 1), result.p99_ms
                    )
                )
            settled = await_scales(
                sandbox,
                services,
                lambda s: sum(s.values()) - START_SCALE * len(s) == store_counts(state).accepted,
            )
            counts = store_counts(state)
        finally:
            service.stop()
    finally:
        sandbox.stop()
    grown = sum(s - START_SCALE for s in settled.values())
    problems = []
    if grown != counts.accepted:
        problems.append(
            f"{settings.busy_targets} targets: scales grew by {grown} for {counts.accepted} accepted hits"
        )
    if counts.folded != counts.accepted:
        problems.append(
            f"{settings.busy_targets} targets: {counts.folded} folded of {counts.accepted} accepted"
        )
    return ReconcileReport(figures[0], figures[1], tuple(problems))
