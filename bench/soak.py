"""Soak: steady hits on many receivers while a receivers file is rewritten in place, for minutes.

Run by hand (not a test), from the repository root:

    .venv/bin/python -m bench.soak [--rate 200] [--receivers 50] [--duration 300] [--retention 60]

Against a real ``webhook-service run`` process whose Cattle is a real ``webhook-service cattle-sandbox``
process (seeded with ``--services`` services at scale 1), with ``--hit-retention-days`` set to
``--retention`` seconds (60 s by default) so the retention window passes during the soak:

- ``--receivers`` "up" receivers (scaleService, amount 1, min 0, max 10^9), spread round-robin over
  the services; the first few share one file (``churn.yaml``), the next ones are grouped several to
  a file (multi-document), the rest have a file each. Trigger URLs come from
  ``webhook-service trigger-url NAME --state DIR``.
- Load: an open-loop sender (a token bucket at ``--rate`` hits/s, at most ``--concurrency`` in
  flight) posts to the receivers round-robin and records every answer's status and outcome.
- Churn: every ``--rewrite-every`` seconds ``churn.yaml`` is rewritten NON-atomically, as an editor
  or ``echo >`` would: truncated, a pause, the first half written, a pause, the rest written. Each
  rewrite changes the file's bytes (a counter in a comment and ``dedupeWindowSeconds`` alternating
  60/61, an edit that keeps the URLs); every document is in YAML flow style, so a cut inside one
  never parses as a different receiver.
- Every ``--interval`` seconds, and at the end: hits/s, statuses, the service's RSS (VmRSS) and the
  sizes of ``webhook.db`` and ``webhook.db-wal``.

Checks (exit 0 only if none fails; a check the run is too short for is SKIPPED, and said so):

1. exactly once: after the load, once the sandbox has converged, every service's scale is
   1 + the accepted hits of its receivers;
2. no trigger URL ever answered 401 or 403 (every non-200 answer is listed with its time and receiver);
3. RSS flat: the RSS at the end is within ``--rss-tolerance`` of the RSS after ``--rss-baseline`` s;
4. database flat: db + wal at the end is within ``--db-tolerance`` of db + wal one retention window
   + 60 s into the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from bench.processes import ProcessExited, Sandbox, Service, trigger_url_argv

PROJECT = "1a5"
START_SCALE = 1
MAX_SCALE = 1_000_000_000
CHURN_FILE = "churn.yaml"
CHURN_RECEIVERS = 5  # receivers in the file rewritten in place
GROUPS, GROUP_SIZE = 3, 5  # then this many multi-document files of this many receivers; the rest alone
MIB = 1024 * 1024
DB_NAME = "webhook.db"


# -- the world: a sandbox seed and the receivers folder


@dataclass(frozen=True)
class Receiver:
    name: str
    service: str  # Cattle service id
    file: str  # file name in the receivers folder
    url: str = ""


def service_ids(count: int) -> list[str]:
    return [f"1s{i}" for i in range(1, count + 1)]


def write_seed(path: Path, services: Sequence[str]) -> Path:
    lines = ["projects:", f"  - id: {PROJECT}", "    name: Default", "    services:"]
    lines += [
        f"      - {{id: {sid}, name: svc-{n:02d}, stackId: 1st1, scale: {START_SCALE}}}"
        for n, sid in enumerate(services, 1)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def plan_receivers(count: int, services: Sequence[str]) -> list[Receiver]:
    receivers = []
    for i in range(count):
        if i < CHURN_RECEIVERS:
            file = CHURN_FILE
        elif i < CHURN_RECEIVERS + GROUPS * GROUP_SIZE:
            file = f"group-{(i - CHURN_RECEIVERS) // GROUP_SIZE + 1}.yaml"
        else:
            file = f"soak-{i:03d}.yaml"
        receivers.append(Receiver(name=f"soak-{i:03d}", service=services[i % len(services)], file=file))
    return receivers


def receiver_document(receiver: Receiver, dedupe_window: int = 60) -> str:
    """One document, each mapping in flow style: a file cut anywhere inside a line does not parse."""
    config = (
        f"{{projectId: {PROJECT}, serviceId: {receiver.service}, action: up, amount: 1, "
        f"min: 0, max: {MAX_SCALE}}}"
    )
    return (
        "apiVersion: webhook-service.dev/v1\n"
        "kind: Receiver\n"
        f"metadata: {{name: {receiver.name}, namespace: default}}\n"
        f"spec: {{driver: scaleService, scaleServiceConfig: {config}, "
        f"dedupeWindowSeconds: {dedupe_window}}}\n"
    )


def file_text(receivers: Sequence[Receiver], revision: int = 0) -> str:
    head = f"# rewrite {revision}\n"
    return head + "---\n".join(receiver_document(r, 60 + revision % 2) for r in receivers)


def write_receivers(folder: Path, receivers: Sequence[Receiver]) -> dict[str, list[Receiver]]:
    files: dict[str, list[Receiver]] = {}
    for r in receivers:
        files.setdefault(r.file, []).append(r)
    for name, members in files.items():
        (folder / name).write_text(file_text(members))
    return files


# -- measurements


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss: int  # bytes; -1 if unreadable
    db: int
    wal: int

    @property
    def store(self) -> int:
        return self.db + self.wal


def read_rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return -1


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def take_sample(t: float, pid: int, state: Path) -> Sample:
    return Sample(t, read_rss(pid), file_size(state / DB_NAME), file_size(state / f"{DB_NAME}-wal"))


@dataclass
class Oddity:
    """An answer other than 200 (or a 200 whose outcome is not ``accepted``), or no answer at all."""

    t: float
    receiver: str
    status: str
    body: str


@dataclass
class Stats:
    started_wall: float  # time.time() when the load started
    started: float  # time.monotonic() when the load started
    sent: int = 0
    answered: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)  # receiver -> accepted hits
    unknown: Counter[str] = field(default_factory=Counter)  # receiver -> hits without an answer
    oddities: list[Oddity] = field(default_factory=list)
    cap_waits: int = 0  # launches that waited for a free slot (the concurrency cap was reached)
    max_lag: float = 0.0  # how late a hit left compared with its schedule
    # per interval, reset by the reporter
    i_answered: int = 0
    i_statuses: Counter[str] = field(default_factory=Counter)
    i_latencies: list[float] = field(default_factory=list)
    i_max_lag: float = 0.0

    def now(self) -> float:
        return time.monotonic() - self.started

    def wall(self, t: float) -> str:
        stamp = datetime.fromtimestamp(self.started_wall + t, tz=UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def answer(self, receiver: str, status: str, outcome: str | None, latency: float, body: str) -> None:
        self.answered += 1
        self.i_answered += 1
        self.statuses[status] += 1
        self.i_statuses[status] += 1
        self.i_latencies.append(latency)
        if outcome is not None:
            self.outcomes[outcome] += 1
        if outcome == "accepted":
            self.accepted[receiver] += 1
            return
        if status.startswith("error"):
            self.unknown[receiver] += 1  # it may or may not have been recorded
        self.oddities.append(Oddity(self.now(), receiver, status, body))


class ChurnLog:
    """When each rewrite of the churn file began and reached each state, to place an oddity in it."""

    def __init__(self) -> None:
        self.events: list[tuple[float, int, str]] = []  # (t, revision, "truncated" | "half" | "full")

    def last_before(self, t: float) -> str:
        found = [e for e in self.events if e[0] <= t]
        if not found:
            return "before the first rewrite"
        et, revision, phase = found[-1]
        return f"churn.yaml rewrite {revision} {phase} {t - et:.3f}s earlier"

    @property
    def rewrites(self) -> int:
        return sum(1 for e in self.events if e[2] == "full")


# -- the three loops: sender, rewriter, sampler/reporter


async def send_load(
    session: aiohttp.ClientSession,
    receivers: Sequence[Receiver],
    stats: Stats,
    rate: float,
    duration: float,
    concurrency: int,
) -> None:
    """Open loop: hit n leaves at ``start + n / rate``, unless ``concurrency`` hits are in flight."""
    slots = asyncio.Semaphore(concurrency)
    tasks: set[asyncio.Task[None]] = set()
    total = int(duration * rate)

    async def hit(receiver: Receiver) -> None:
        sent = time.monotonic()
        try:
            async with session.post(receiver.url) as answer:
                raw = await answer.read()
                status = str(answer.status)
        except (TimeoutError, aiohttp.ClientError) as e:
            stats.answer(receiver.name, f"error:{type(e).__name__}", None, time.monotonic() - sent, str(e))
            return
        finally:
            slots.release()
        outcome: str | None = None
        body = raw[:300].decode(errors="replace")
        if status == "200":
            try:
                outcome = str(json.loads(raw).get("outcome"))
            except (ValueError, AttributeError):
                outcome = "unparsed"
        stats.answer(receiver.name, status, outcome, time.monotonic() - sent, body)

    while stats.sent < total:
        due = min(total, int(stats.now() * rate) + 1)
        while stats.sent < due:
            if slots.locked():
                stats.cap_waits += 1
            await slots.acquire()
            lag = stats.now() - stats.sent / rate
            stats.max_lag = max(stats.max_lag, lag)
            stats.i_max_lag = max(stats.i_max_lag, lag)
            task = asyncio.create_task(hit(receivers[stats.sent % len(receivers)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            stats.sent += 1
        await asyncio.sleep(max(0.0, stats.sent / rate - stats.now()))
    if tasks:
        await asyncio.gather(*tasks)


def write_bytes(path: Path, data: bytes, *, truncate: bool = False) -> None:
    """Append ``data`` to ``path`` (after truncating it, if asked), in place: same inode, no rename."""
    flags = os.O_WRONLY | (os.O_TRUNC if truncate else os.O_APPEND)
    fd = os.open(path, flags)
    try:
        if data:
            os.write(fd, data)
    finally:
        os.close(fd)


async def churn(
    path: Path, members: Sequence[Receiver], stats: Stats, log: ChurnLog, every: float, pause: float
) -> None:
    """Rewrite ``path`` non-atomically every ``every`` seconds until cancelled."""
    revision = 0
    while True:
        revision += 1
        await asyncio.sleep(max(0.0, revision * every - stats.now()))
        data = file_text(members, revision).encode()
        half = len(data) // 2
        write_bytes(path, b"", truncate=True)
        log.events.append((stats.now(), revision, "truncated"))
        await asyncio.sleep(pause)
        write_bytes(path, data[:half])
        log.events.append((stats.now(), revision, "half"))
        await asyncio.sleep(pause)
        write_bytes(path, data[half:])
        log.events.append((stats.now(), revision, "full"))


def mib(n: int) -> str:
    return f"{n / MIB:7.2f} MiB" if n >= 0 else "    n/a"


def statuses_text(counts: Counter[str]) -> str:
    return ", ".join(f"{s} x{n}" for s, n in sorted(counts.items())) or "-"


def percentile(values: Sequence[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def sample_and_report(
    stats: Stats,
    pid: int,
    state: Path,
    samples: list[Sample],
    churn_log: ChurnLog,
    interval: float,
) -> None:
    """Sample RSS and store sizes every second; print a line every ``interval`` seconds. Cancel to stop."""
    last_report = 0.0
    shown_oddities = 0
    try:
        while True:
            await asyncio.sleep(1.0 - (stats.now() % 1.0))
            samples.append(take_sample(stats.now(), pid, state))
            if stats.now() - last_report >= interval - 0.5:
                shown_oddities = report_interval(stats, samples[-1], churn_log, last_report, shown_oddities)
                last_report = samples[-1].t
    except asyncio.CancelledError:
        sample = take_sample(stats.now(), pid, state)
        samples.append(sample)
        if sample.t - last_report >= 1.0:  # else the last few answers only join the totals
            report_interval(stats, sample, churn_log, last_report, shown_oddities)
        raise


def report_interval(stats: Stats, sample: Sample, churn_log: ChurnLog, since: float, shown: int) -> int:
    span = max(sample.t - since, 1e-9)
    lat = stats.i_latencies
    print(
        f"[{sample.t:6.1f}s] {stats.i_answered / span:6.1f} hits/s  "
        f"statuses: {statuses_text(stats.i_statuses)}  "
        f"latency p50 {percentile(lat, 50) * 1000:.1f} ms p99 {percentile(lat, 99) * 1000:.1f} ms  "
        f"send lag max {stats.i_max_lag * 1000:.0f} ms  RSS {mib(sample.rss).strip()}  "
        f"db {mib(sample.db).strip()} + wal {mib(sample.wal).strip()} = {mib(sample.store).strip()}  "
        f"rewrites {churn_log.rewrites}",
        flush=True,
    )
    for o in stats.oddities[shown : shown + 5]:
        print(f"    ! {stats.wall(o.t)} (t={o.t:.3f}s) {o.receiver}: {o.status} {o.body[:120]}", flush=True)
    if len(stats.oddities) > shown + 5:
        print(f"    ! ... {len(stats.oddities) - shown - 5} more this interval (all listed at the end)")
    stats.i_answered = 0
    stats.i_statuses = Counter()
    stats.i_latencies = []
    stats.i_max_lag = 0.0
    return len(stats.oddities)


# -- after the load


async def scales(session: aiohttp.ClientSession, sandbox_url: str, services: Sequence[str]) -> dict[str, int]:
    out = {}
    for sid in services:
        async with session.get(f"{sandbox_url}/projects/{PROJECT}/services/{sid}") as answer:
            out[sid] = int((await answer.json())["scale"])
    return out


async def converge(
    session: aiohttp.ClientSession,
    sandbox_url: str,
    expected: dict[str, tuple[int, int]],
    give_up_after: float,
    still_for: float,
) -> tuple[dict[str, int], float]:
    """Poll the sandbox until every scale is within its expected range, or nothing has moved for
    ``still_for`` seconds, or ``give_up_after`` seconds have passed; returns the last scales and the
    seconds waited."""
    started = time.monotonic()
    last: dict[str, int] = {}
    moved = started
    while True:
        now = await scales(session, sandbox_url, list(expected))
        if now != last:
            last, moved = now, time.monotonic()
        if all(lo <= now[s] <= hi for s, (lo, hi) in expected.items()):
            break
        if time.monotonic() - moved > still_for or time.monotonic() - started > give_up_after:
            break
        await asyncio.sleep(0.5)
    return last, time.monotonic() - started


def at(samples: Sequence[Sample], t: float) -> Sample | None:
    """The first sample taken at or after ``t`` (None if the run ended before)."""
    return next((s for s in samples if s.t >= t), None)


def growth(before: Sample, after: Sample, size: Callable[[Sample], int]) -> str:
    grew = size(after) - size(before)
    per_minute = grew / max(after.t - before.t, 1e-9) * 60
    return f"{grew / MIB:+.2f} MiB ({grew / size(before) * 100:+.1f}%, {per_minute / MIB:+.2f} MiB/min)"


def log_summary(path: Path, top: int = 6) -> list[str]:
    """The service log's warnings and errors, grouped by message (numbers and times blurred)."""
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if any(level in line for level in (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")):
            message = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line).replace(str(path.parent), "<work dir>")
            counts[re.sub(r"\d+", "N", message)[:200]] += 1
    if not counts:
        return ["service log: no warnings or errors"]
    out = [f"service log: {sum(counts.values())} warnings/errors, {len(counts)} distinct:"]
    out += [f"    {n:6d} x {message}" for message, n in counts.most_common(top)]
    if len(counts) > top:
        out.append(f"    ... {len(counts) - top} more distinct messages")
    return out


# -- setup and the run


async def fetch_urls(state: Path, receivers: Sequence[Receiver], within: float = 60.0) -> list[Receiver]:
    """Each receiver's trigger URL from ``webhook-service trigger-url`` (retried until it is loaded)."""
    gate = asyncio.Semaphore(8)

    async def one(r: Receiver) -> Receiver:
        deadline = time.monotonic() + within
        async with gate:
            while True:
                proc = await asyncio.create_subprocess_exec(
                    *trigger_url_argv(state, r.name),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await proc.communicate()
                if proc.returncode == 0 and out.strip():
                    return Receiver(r.name, r.service, r.file, out.decode().strip())
                if time.monotonic() > deadline:
                    raise RuntimeError(f"trigger-url {r.name}: {err.decode().strip()}")
                await asyncio.sleep(0.5)

    return list(await asyncio.gather(*(one(r) for r in receivers)))


def start_service(
    tmp: Path, receivers_dir: Path, sandbox: Sandbox, retention: float, args: argparse.Namespace
) -> tuple[Service, float, str]:
    """Start the service with ``retention`` seconds of hit history; if the flag refuses it, with the
    shortest the service accepts (1 day, its documented minimum). Returns the service, the retention
    used (seconds) and a note."""
    extra = ["--resync-interval", str(args.resync_interval)]
    env = {"WEBHOOK_LOG_LEVEL": args.log_level}
    days = repr(retention / 86400)
    service = Service(
        tmp,
        receivers=receivers_dir,
        state=tmp / "state",
        cattle_url=sandbox.url,
        extra=[*extra, "--hit-retention-days", days],
        env=env,
    )
    try:
        return service.start_and_wait(), retention, f"--hit-retention-days {days} ({retention:g} s)"
    except ProcessExited as e:
        if "retention" not in e.output:
            raise
        refusal = next((ln for ln in e.output.splitlines() if "retention" in ln), e.output.strip())
    fallback = Service(
        tmp,
        receivers=receivers_dir,
        state=tmp / "state",
        cattle_url=sandbox.url,
        extra=[*extra, "--hit-retention-days", "1"],
        env=env,
    )
    note = (
        f"--hit-retention-days 1 (86400 s): the service REFUSED {days} ({retention:g} s): {refusal.strip()}"
    )
    return fallback.start_and_wait(), 86400.0, note


async def soak(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="webhook-soak-"))
    services = service_ids(args.services)
    seed = write_seed(tmp / "seed.yaml", services)
    receivers_dir = tmp / "receivers"
    receivers_dir.mkdir()
    planned = plan_receivers(args.receivers, services)
    files = write_receivers(receivers_dir, planned)
    sandbox = Sandbox(tmp, seed)
    try:
        await asyncio.to_thread(sandbox.start_and_wait)
        service, retention, retention_note = await asyncio.to_thread(
            start_service, tmp, receivers_dir, sandbox, args.retention, args
        )
        try:
            receivers = await fetch_urls(service.state, planned)
            print(f"work dir: {tmp} (service log: {service.log_path.name}, state: state/)")
            print(
                f"setup: {len(services)} services at scale {START_SCALE} in a cattle-sandbox process; "
                f"{len(receivers)} 'up' receivers in {len(files)} files ({CHURN_FILE} holds "
                f"{len(files.get(CHURN_FILE, []))}, rewritten in place every {args.rewrite_every:g}s, "
                f"pauses {args.rewrite_pause:g}s)"
            )
            print(f"retention: {retention_note}")
            print(
                f"load: {args.rate:g} hits/s for {args.duration:g}s, round-robin, at most "
                f"{args.concurrency} in flight; service pid {service.pid}"
            )
            print(flush=True)
            return await run_load(args, sandbox, service, receivers, files, receivers_dir, retention)
        finally:
            service.stop()
    finally:
        sandbox.stop()


async def run_load(
    args: argparse.Namespace,
    sandbox: Sandbox,
    service: Service,
    receivers: Sequence[Receiver],
    files: dict[str, list[Receiver]],
    receivers_dir: Path,
    retention: float,
) -> int:
    stats = Stats(started_wall=time.time(), started=time.monotonic())
    samples: list[Sample] = [take_sample(0.0, service.pid, service.state)]
    churn_log = ChurnLog()
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        reporter = asyncio.create_task(
            sample_and_report(stats, service.pid, service.state, samples, churn_log, args.interval)
        )
        churner = asyncio.create_task(
            churn(
                receivers_dir / CHURN_FILE,
                files.get(CHURN_FILE, []),
                stats,
                churn_log,
                args.rewrite_every,
                args.rewrite_pause,
            )
        )
        try:
            await send_load(session, receivers, stats, args.rate, args.duration, args.concurrency)
        finally:
            load_time = stats.now()
            for task in (churner, reporter):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        end = samples[-1]

        by_service: dict[str, list[Receiver]] = {}
        for r in receivers:
            by_service.setdefault(r.service, []).append(r)
        expected = {
            sid: (
                START_SCALE + sum(stats.accepted[r.name] for r in rs),
                START_SCALE + sum(stats.accepted[r.name] + stats.unknown[r.name] for r in rs),
            )
            for sid, rs in sorted(by_service.items(), key=lambda item: int(item[0][2:]))
        }
        final, waited = await converge(session, sandbox.url, expected, args.converge_timeout, 20.0)
    return summarize(
        args, stats, samples, end, load_time, churn_log, expected, final, waited, retention, service
    )


def summarize(
    args: argparse.Namespace,
    stats: Stats,
    samples: Sequence[Sample],
    end: Sample,
    load_time: float,
    churn_log: ChurnLog,
    expected: dict[str, tuple[int, int]],
    final: dict[str, int],
    waited: float,
    retention: float,
    service: Service,
) -> int:
    failed: list[str] = []
    skipped: list[str] = []
    print()
    print("SUMMARY")
    print(
        f"load: {stats.sent} hits sent in {load_time:.1f}s ({stats.sent / load_time:.1f}/s), "
        f"{stats.answered} answered; send lag max {stats.max_lag * 1000:.0f} ms, "
        f"{stats.cap_waits} launches waited for the concurrency cap"
    )
    print(f"statuses: {statuses_text(stats.statuses)}")
    print(f"outcomes of 200s: {statuses_text(stats.outcomes)}")
    print(f"churn: {churn_log.rewrites} non-atomic rewrites of {CHURN_FILE}")

    # 1. exactly once
    accepted = sum(stats.accepted.values())
    bad = {sid for sid, (lo, hi) in expected.items() if not lo <= final.get(sid, -1) <= hi}
    print(f"check exactly-once: sandbox converged after {waited:.1f}s")
    for sid, (lo, hi) in expected.items():
        want = f"{lo}" if lo == hi else f"{lo}..{hi} ({hi - lo} hits without an answer)"
        verdict_of = "MISMATCH" if sid in bad else "ok"
        print(f"    service {sid}: scale {final.get(sid)}  expected {want}  {verdict_of}")
    if bad:
        failed.append(f"exactly-once ({len(bad)} services off)")
        print(f"  FAIL: {len(bad)} of {len(expected)} services not at 1 + accepted hits")
    else:
        print(f"  PASS: every service at 1 + its receivers' accepted hits ({accepted} accepted in all)")

    # 2. no 401/403, and every other non-200 listed
    auth = [o for o in stats.oddities if o.status in ("401", "403")]
    print(f"check no 401/403: {len(stats.oddities)} answers other than 200 'accepted'")
    for o in stats.oddities[: args.list_limit]:
        print(
            f"    {stats.wall(o.t)} (t={o.t:.3f}s) {o.receiver}: {o.status} {o.body[:200]!r}"
            f"  [{churn_log.last_before(o.t)}]"
        )
    if len(stats.oddities) > args.list_limit:
        print(f"    ... and {len(stats.oddities) - args.list_limit} more")
    if auth:
        failed.append(f"401/403 x{len(auth)}")
        print(f"  FAIL: {len(auth)} answers 401/403, on {sorted({o.receiver for o in auth})}")
    else:
        print("  PASS: no 401 or 403")
    if stats.oddities and not auth:
        failed.append(f"non-200 or not accepted x{len(stats.oddities)}")

    # 3. RSS flat
    base = at(samples, args.rss_baseline)
    if base is None or base is end or base.rss < 0 or end.rss < 0:
        skipped.append("RSS flat")
        print(f"check RSS flat: SKIPPED (the load ran {load_time:.0f}s, baseline at {args.rss_baseline:g}s)")
    else:
        print(
            f"check RSS flat: {mib(base.rss).strip()} at {base.t:.0f}s, {mib(end.rss).strip()} at the end "
            f"({end.t:.0f}s): {growth(base, end, lambda x: x.rss)}; tolerance {args.rss_tolerance * 100:g}%"
        )
        if end.rss > base.rss * (1 + args.rss_tolerance):
            failed.append("RSS grew")
            print("  FAIL: RSS grew beyond the tolerance")
        else:
            print("  PASS")

    # 4. database flat after the retention window
    mark = retention + 60
    print("store size (db + wal) per interval:")
    marks = [at(samples, k * args.interval - 0.5) for k in range(int(end.t // args.interval) + 1)]
    shown: list[Sample] = []
    for m in [*marks, end]:
        if m is not None and (m is end or end.t - m.t >= 1.0) and all(m is not seen for seen in shown):
            shown.append(m)
    for s in shown:
        print(f"    {s.t:6.1f}s  db {mib(s.db)}  wal {mib(s.wal)}  total {mib(s.store)}")
    base = at(samples, mark)
    if base is None or base is end:
        skipped.append("db flat")
        print(
            f"check db flat: SKIPPED (needs the size at retention {retention:g}s + 60s = {mark:g}s; "
            f"the load ran {load_time:.0f}s)"
        )
    else:
        print(
            f"check db flat: {mib(base.store).strip()} at {base.t:.0f}s (retention + 60 s), "
            f"{mib(end.store).strip()} at the end ({end.t:.0f}s): {growth(base, end, lambda x: x.store)}; "
            f"tolerance {args.db_tolerance * 100:g}%"
        )
        if end.store > base.store * (1 + args.db_tolerance):
            failed.append("db grew")
            print("  FAIL: db + wal grew beyond the tolerance")
        else:
            print("  PASS")

    for line in log_summary(service.log_path):
        print(line)
    verdict = ("FAIL: " + "; ".join(failed)) if failed else "PASS"
    if skipped:
        verdict += f" (SKIPPED, run too short: {', '.join(skipped)})"
    print(f"verdict: {verdict}")
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200.0, help="hits per second (default 200)")
    parser.add_argument("--receivers", type=int, default=50, help="receivers (default 50)")
    parser.add_argument("--services", type=int, default=10, help="sandbox services (default 10)")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (default 300)")
    parser.add_argument(
        "--retention", type=float, default=60.0, help="hit retention in seconds, passed in days (default 60)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="hits in flight at most (default 64)")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between reports (default 30)")
    parser.add_argument("--rewrite-every", type=float, default=1.0, help="seconds between rewrites")
    parser.add_argument("--rewrite-pause", type=float, default=0.2, help="pause inside a rewrite (seconds)")
    parser.add_argument("--rss-baseline", type=float, default=60.0, help="RSS compared from this second on")
    parser.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth (fraction)")
    parser.add_argument("--db-tolerance", type=float, default=0.10, help="allowed db+wal growth (fraction)")
    parser.add_argument("--converge-timeout", type=float, default=120.0, help="seconds to wait for Cattle")
    parser.add_argument("--resync-interval", type=float, default=30.0, help="the service's resync interval")
    parser.add_argument("--log-level", default="INFO", help="the service's log level (default INFO)")
    parser.add_argument("--list-limit", type=int, default=50, help="non-200 answers listed at the end")
    args = parser.parse_args()
    if args.receivers < 1 or args.services < 1 or args.rate <= 0 or args.duration <= 0:
        parser.error("--receivers, --services, --rate and --duration must be positive")
    sys.exit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
