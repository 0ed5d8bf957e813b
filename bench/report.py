"""The benchmark's results as Markdown tables (for docs/performance.md) and as JSON (``--json``).

The Markdown starts with the machine (cores, CPU model, kernel, Python) and the command that made it,
so a table pasted into the docs says where its figures come from.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.receivers_scale import ScaleFigures
from bench.reconcile import ReconcileReport
from bench.throughput import ThroughputReport
from bench.world import DEFAULT_LOG_LEVEL, BenchSettings

MIB = 1024 * 1024


@dataclass(frozen=True)
class Machine:
    cores: int
    cpu: str
    kernel: str
    python: str
    load: tuple[float, float, float]  # load averages (1, 5, 15 min) when the run started

    @classmethod
    def this(cls) -> Machine:
        cpu = "unknown"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
        return cls(os.cpu_count() or 0, cpu, platform.release(), platform.python_version(), os.getloadavg())


@dataclass
class Results:
    machine: Machine
    command: str
    settings: BenchSettings
    throughput: ThroughputReport | None = None
    scale: list[ScaleFigures] = dataclasses.field(default_factory=list)
    reconcile: ReconcileReport | None = None
    load_at_end: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def problems(self) -> list[str]:
        found = self.throughput.exactly_once_problems() if self.throughput else []
        return found + list(self.reconcile.problems if self.reconcile else ())


def command_line(argv: Sequence[str]) -> str:
    """The run's command as ``make bench`` spells it (the same as ``.venv/bin/python -m bench ARGS``)."""
    return shlex.join(["make", "bench", *([f"BENCH_FLAGS={shlex.join(argv)}"] if argv else [])])


def to_json(results: Results) -> dict[str, Any]:
    out: dict[str, Any] = {
        "machine": dataclasses.asdict(results.machine),
        "command": results.command,
        "settings": dataclasses.asdict(results.settings),
        "log_level": DEFAULT_LOG_LEVEL,
        "load_at_end": results.load_at_end,
        "problems": results.problems(),
    }
    if results.throughput:
        t = results.throughput
        out["throughput"] = [
            {
                "connections": f.connections,
                "hits_per_s": f.hits_per_s,
                "bare_per_s": f.bare_per_s,
                "ratio": f.ratio,
                "ratio_min": f.ratio_range[0],
                "ratio_max": f.ratio_range[1],
                "p50_ms": f.p50_ms,
                "p99_ms": f.p99_ms,
                "bare_p99_ms": f.bare_p99_ms,
                "cpu_us_per_hit": f.cpu_us_per_hit(),
                "loop_us_per_hit": f.cpu_us_per_hit("loop"),
                "other_threads_us_per_hit": f.cpu_us_per_hit("other"),
                "bare_cpu_us_per_request": f.bare_cpu_us,
                "cpu_ratio": f.cpu_ratio,
                "not_2xx": f.not_2xx,
                "bare_not_2xx": f.bare_not_2xx,
            }
            for f in t.figures
        ]
        out["exactly_once"] = {
            "wrk_accepted": t.wrk_accepted,
            "store_accepted": t.store_accepted,
            "folded": t.folded,
            "final_scale": t.final_scale,
        }
        out["storage"] = {"hits": t.storage_hits, "bytes": t.storage_bytes, "bytes_per_hit": t.bytes_per_hit}
    out["receivers"] = [dataclasses.asdict(s) for s in results.scale]
    if results.reconcile:
        out["reconcile"] = {
            "one": dataclasses.asdict(results.reconcile.one),
            "many": dataclasses.asdict(results.reconcile.many),
            "growth": results.reconcile.growth,
        }
    return out


def to_markdown(results: Results) -> str:
    m, s = results.machine, results.settings
    lines = [
        f"Machine: {m.cores} cores, {m.cpu}, Linux {m.kernel}, Python {m.python}. "
        f"Server on core {s.server_core}; wrk and the Cattle sandbox on core {s.load_core}. "
        f"Log level {DEFAULT_LOG_LEVEL} (the default). Load average at the start {m.load[0]:.2f}, "
        f"at the end {results.load_at_end[0]:.2f} (other work on the machine skews every figure).",
        "",
        "```sh",
        results.command,
        "```",
        "",
    ]
    if results.throughput:
        lines += throughput_table(results.throughput, s)
    if results.scale:
        lines += scale_table(results.scale)
    if results.reconcile:
        r = results.reconcile
        lines += [
            "| busy targets (32 connections) | hits/s | CPU µs per hit | p99 |",
            "|---|---|---|---|",
            *(
                f"| {f.targets} | {f.hits_per_s:,.0f} | {f.cpu_us_per_hit:,.0f} | {f.p99_ms:.1f} ms |"
                for f in (r.one, r.many)
            ),
            "",
            f"CPU per hit with {r.many.targets} busy targets: {r.growth:.2f} times that of one.",
            "",
        ]
    problems = results.problems()
    lines.append(
        "Exactly once: **FAILED**: " + "; ".join(problems) if problems else "Exactly once: held (see above)."
    )
    return "\n".join(lines) + "\n"


def throughput_table(t: ThroughputReport, s: BenchSettings) -> list[str]:
    lines = [
        f"Median of {s.rounds} alternating rounds of {s.seconds:g} s (bare, then service) per row; "
        "every hit has a new Idempotency-Key, so every 200 is a durable, accepted hit. "
        "CPU ratio: bare CPU per request over the service's CPU per hit.",
        "",
        "| connections | service hits/s | bare req/s | ratio (min-max) | p50 / p99 | bare p99 "
        "| CPU µs per hit (loop + other threads) | bare CPU µs per req | CPU ratio "
        "| non-2xx (service / bare) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in t.figures:
        low, high = f.ratio_range
        lines.append(
            f"| {f.connections} | {f.hits_per_s:,.0f} | {f.bare_per_s:,.0f} "
            f"| {f.ratio:.2f} ({low:.2f}-{high:.2f}) "
            f"| {f.p50_ms:.1f} / {f.p99_ms:.1f} ms | {f.bare_p99_ms:.1f} ms "
            f"| {f.cpu_us_per_hit():.0f} ({f.cpu_us_per_hit('loop'):.0f} + {f.cpu_us_per_hit('other'):.0f}) "
            f"| {f.bare_cpu_us:.0f} | {f.cpu_ratio:.2f} | {f.not_2xx} / {f.bare_not_2xx} |"
        )
    lines += [
        "",
        f"Exactly once: wrk counted {t.wrk_accepted:,} answers 200; the store holds {t.store_accepted:,} "
        f"accepted hits, {t.folded:,} folded; Cattle's scale went from 1 to {t.final_scale:,}.",
        "",
        f"Storage: {t.storage_bytes / MIB:.1f} MiB for {t.storage_hits:,} hits, "
        f"**{t.bytes_per_hit:.0f} bytes per hit** (page_count * page_size after a checkpoint).",
        "",
    ]
    return lines


def scale_table(figures: Sequence[ScaleFigures]) -> list[str]:
    lines = [
        "| receiver files | ready in | RSS | idle CPU "
        "| idle `/healthz` p50 / p99 / max | a new file in effect |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        lines.append(
            f"| {f.receivers:,} | {f.ready_s:.1f} s | {f.rss_bytes / MIB:.0f} MiB "
            f"| {f.idle_cpu_percent:.1f}% "
            f"| {f.healthz_p50_ms:.1f} / {f.healthz_p99_ms:.1f} / {f.healthz_max_ms:.1f} ms "
            f"| {f.change_s:.2f} s |"
        )
    return [*lines, ""]
