"""``python -m bench`` (or ``make bench``): the service against a bare aiohttp handler, with wrk.

Run by hand, from the repository root, with the project's venv; never by the test suite (it takes
minutes and wants the machine to itself). Three parts, each optional (``--parts``):

- ``throughput``: hits/s, the ratio to a bare aiohttp handler, p50/p99, CPU per hit and non-2xx
  answers at each connection count, then exactly-once and bytes per hit in the store
  (``bench/throughput.py``);
- ``receivers``: ready time, RSS, idle CPU, idle ``/healthz`` latency and the time a file's change
  takes to apply, by number of receiver files (``bench/receivers_scale.py``);
- ``reconcile``: CPU per hit with one busy target and with many (``bench/reconcile.py``).

It prints Markdown tables ready for docs/performance.md, or JSON with ``--json``, and exits 1 when a
hit was lost or applied twice. ``--quick`` is a smoke run of about two minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.receivers_scale import measure
from bench.reconcile import run_reconcile
from bench.report import Machine, Results, command_line, to_json, to_markdown
from bench.throughput import run_throughput
from bench.world import BenchSettings, pin_self
from bench.wrk import Wrk, WrkMissing, find_wrk

PARTS = ("throughput", "receivers", "reconcile")
QUICK = BenchSettings(
    connections=(8, 128),
    rounds=1,
    seconds=2.0,
    receiver_counts=(10, 1_000),
    idle_seconds=2.0,
    busy_targets=10,
    reconcile_seconds=2.0,
    storage_hits=5_000,
)


def counts(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer, shorter rounds")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--connections", type=counts, help="comma-separated connection counts")
    parser.add_argument("--rounds", type=int, help="alternating rounds per connection count")
    parser.add_argument("--seconds", type=float, help="seconds per round")
    parser.add_argument("--receiver-counts", type=counts, help="comma-separated numbers of receiver files")
    parser.add_argument("--idle-seconds", type=float, help="seconds of idle CPU and /healthz sampling")
    parser.add_argument("--busy-targets", type=int, help="targets hit at once for the reconcile figures")
    parser.add_argument("--storage-hits", type=int, help="hits in the store before bytes per hit are read")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--install", action="store_true", help="install wrk with apt-get if missing (root)")
    args = parser.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def settings_from(args: argparse.Namespace) -> BenchSettings:
    base = QUICK if args.quick else BenchSettings()
    given = {
        "connections": args.connections,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "receiver_counts": args.receiver_counts,
        "idle_seconds": args.idle_seconds,
        "busy_targets": args.busy_targets,
        "storage_hits": args.storage_hits,
    }
    return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    try:
        wrk = Wrk(find_wrk(args.install), Path(tempfile.mkdtemp(prefix="webhook-bench-wrk-")))
    except WrkMissing as e:
        print(e, file=sys.stderr)
        return 2
    parts = args.parts.split(",")
    pin_self(settings)
    tmp = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    progress(f"working in {tmp}")
    results = Results(Machine.this(), command_line(argv), settings)
    if "throughput" in parts:
        results.throughput = run_throughput(tmp, settings, wrk, progress)
    if "receivers" in parts:
        for count in settings.receiver_counts:
            results.scale.append(measure(tmp, settings, count))
            progress(f"receivers: {results.scale[-1]}")
    if "reconcile" in parts:
        results.reconcile = run_reconcile(tmp, settings, wrk)
        progress(f"reconcile: {results.reconcile}")
    results.load_at_end = os.getloadavg()
    print(json.dumps(to_json(results), indent=2) if args.json else to_markdown(results))
    problems = results.problems()
    for problem in problems:
        print(f"EXACTLY-ONCE FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
