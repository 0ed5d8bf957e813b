"""What the number of receiver files costs: start-up, memory, idle CPU, idle latency, a change's delay.

Run by hand (not a test), from the repository root:

    .venv/bin/python -m bench.receivers_files [--counts 10 1000 10000] [--idle 10] [--env WEBHOOK_X=y]

For each count, a real ``webhook-service run`` (its Cattle a real ``cattle-sandbox``) over a folder
of that many one-receiver files, at the default log level:

- ready: seconds from the process start until ``/readyz`` answers 200 (every token minted), on a
  fresh state folder and again on a restart over the same one;
- RSS (VmRSS) once ready;
- idle CPU: the process's CPU time over ``--idle`` seconds without a request, as a share of one core;
- idle ``/healthz``: p50/p99 of sequential requests over ``--idle`` seconds;
- change: seconds from writing one more file until ``webhook_receivers`` in ``/metrics`` counts it.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from bench.processes import Sandbox, Service, write_receiver

SEED = """\
projects:
  - id: 1a5
    name: Default
    services:
      - {id: 1s7, name: web, stackId: 1st1, scale: 1}
"""
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    return conn.getresponse().read()


def receivers_gauge(conn: http.client.HTTPConnection) -> float:
    match = re.search(rb"^webhook_receivers (\S+)$", get(conn, "/metrics"), re.MULTILINE)
    return float(match.group(1)) if match else -1.0


def start(tmp: Path, folder: Path, sandbox: Sandbox, env: dict[str, str]) -> tuple[Service, float]:
    service = Service(tmp, receivers=folder, state=tmp / "state", cattle_url=sandbox.url, env=env)
    began = time.monotonic()
    service.start()
    service.wait_http(f"{service.base}/readyz", timeout=300)
    return service, time.monotonic() - began


def measure(count: int, idle: float, env: dict[str, str]) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="webhook-recv-bench-"))
    (tmp / "seed.yaml").write_text(SEED)
    folder = tmp / "receivers"
    folder.mkdir()
    for i in range(count):
        write_receiver(folder, f"r{i:05d}")
    sandbox = Sandbox(tmp, tmp / "seed.yaml")
    sandbox.start()
    sandbox.wait_http(sandbox.url)
    try:
        service, fresh = start(tmp, folder, sandbox, env)
        service.stop()
        service, restart = start(tmp, folder, sandbox, env)
        try:
            return {"ready_fresh": fresh, "ready_restart": restart, **idle_figures(service, idle, folder)}
        finally:
            service.stop()
    finally:
        sandbox.stop()


def idle_figures(service: Service, idle: float, folder: Path) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    time.sleep(2.0)  # let start-up's tail (the first reconcile pass, the log) settle
    rss = rss_mib(service.pid)
    cpu0, t0 = cpu_seconds(service.pid), time.monotonic()
    time.sleep(idle)
    cpu = (cpu_seconds(service.pid) - cpu0) / (time.monotonic() - t0)
    latencies = []
    deadline = time.monotonic() + idle
    while time.monotonic() < deadline:
        began = time.perf_counter()
        get(conn, "/healthz")
        latencies.append(time.perf_counter() - began)
        time.sleep(0.01)
    before = receivers_gauge(conn)
    began = time.monotonic()
    write_receiver(folder, "added-now")
    while receivers_gauge(conn) <= before and time.monotonic() - began < 60:
        time.sleep(0.01)
    change = time.monotonic() - began
    latencies.sort()
    return {
        "rss_mib": rss,
        "idle_cpu_pct": 100 * cpu,
        "healthz_p50_ms": 1000 * statistics.median(latencies),
        "healthz_p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "change_s": change,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 1000, 10000])
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of each idle measurement")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    columns = ["ready_fresh", "ready_restart", "rss_mib", "idle_cpu_pct", "healthz_p50_ms", "healthz_p99_ms"]
    columns.append("change_s")
    print("| files | " + " | ".join(columns) + " |")
    print("|---:|" + "---:|" * len(columns))
    for count in args.counts:
        figures = measure(count, args.idle, env)
        print(f"| {count:,} | " + " | ".join(f"{figures[c]:.2f}" for c in columns) + " |", flush=True)


if __name__ == "__main__":
    main()
