"""wrk as the load generator: the Lua script it runs, the command line, and what it reports.

wrk (Debian's package ``wrk``) is a C load generator; a Python client tops out below what a bare
aiohttp handler serves, so it would flatter any server measured against that handler. wrk is not
installed by pip: :func:`find_wrk` says how to get it, or installs it with apt-get when asked to and
run as root.

The script POSTs each request to the next path of a fixed list (one receiver's trigger URL, or many
for the reconcile figures) with a fresh ``Idempotency-Key``, so every hit is a new one, never a
duplicate: the key is the run's prefix, the wrk thread's number (given in ``setup``) and a counter of
that thread. ``response`` counts answers by status in each thread; ``done`` gathers the threads'
counts and prints one JSON line (requests, duration, statuses, socket errors, latency percentiles),
which :func:`parse_report` reads, so nothing depends on wrk's human-readable text.

wrk counts only the answers it read before its time was up; requests still in flight then may still
be accepted by the server. Whoever checks exactly-once allows for at most one such request per
connection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

INSTALL_HINT = (
    "wrk is not installed: `apt-get install wrk` (Debian's package), "
    "or run `python -m bench --install` as root"
)
REPORT_MARK = "WRK-REPORT "

LUA_TEMPLATE = """
local paths = {%(paths)s}
local prefix = "%(prefix)s"
local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("id", next_id)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  statuses = {}
end

function request()
  counter = counter + 1
  local path = paths[(counter %% #paths) + 1]
  local key = prefix .. "-" .. id .. "-" .. counter
  local headers = {["Content-Type"] = "application/json", ["Idempotency-Key"] = key}
  return wrk.format("POST", path, headers, "{}")
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    table.insert(parts, string.format('"%%s": %%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    '%(mark)s{"requests": %%d, "duration_us": %%d, "statuses": {%%s}, ' ..
    '"socket_errors": %%d, "p50_us": %%d, "p90_us": %%d, "p99_us": %%d, "max_us": %%d}\\n',
    summary.requests, summary.duration, table.concat(parts, ", "),
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


class WrkReportJson(TypedDict):
    requests: int
    duration_us: int
    statuses: dict[str, int]
    socket_errors: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int


@dataclass(frozen=True)
class WrkResult:
    requests: int  # answers read within the duration
    seconds: float
    statuses: dict[int, int]  # answers by HTTP status
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok(self) -> int:
        """Answers 200: for the service, hits accepted (every key is new)."""
        return self.statuses.get(200, 0)

    @property
    def not_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def rate(self) -> float:
        """Answers 200 per second."""
        return self.ok / self.seconds if self.seconds else 0.0


class WrkMissing(RuntimeError):
    """wrk is not on PATH (and was not installed)."""


class WrkFailed(RuntimeError):
    """wrk ran but printed no report."""


def lua_script(paths: Sequence[str], prefix: str) -> str:
    """The script that POSTs ``paths`` (path and query, no host) round-robin, each with a new key."""
    if not paths:
        raise ValueError("wrk needs at least one path")
    quoted = ", ".join(json.dumps(p) for p in paths)  # a JSON string is a valid Lua string here
    return LUA_TEMPLATE % {"paths": quoted, "prefix": prefix, "mark": REPORT_MARK}


def parse_report(stdout: str) -> WrkResult:
    """The JSON line the script's ``done`` printed, as a :class:`WrkResult`."""
    for line in stdout.splitlines():
        if line.startswith(REPORT_MARK):
            raw: WrkReportJson = json.loads(line[len(REPORT_MARK) :])
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                statuses={int(k): v for k, v in raw["statuses"].items()},
                socket_errors=raw["socket_errors"],
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
            )
    raise WrkFailed(f"no report in wrk's output:\n{stdout}")


def find_wrk(install: bool = False) -> str:
    """wrk's path; with ``install`` and root, apt-get installs it first. Otherwise WrkMissing says how."""
    found = shutil.which("wrk")
    if found:
        return found
    if install and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], check=True, env=env
        )
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing(INSTALL_HINT)


@dataclass(frozen=True)
class Wrk:
    """One wrk binary and the folder its scripts are written to."""

    binary: str
    scripts: Path

    def run(
        self, base_url: str, paths: Sequence[str], *, connections: int, seconds: float, prefix: str
    ) -> WrkResult:
        script = self.scripts / f"{prefix}.lua"
        script.write_text(lua_script(paths, prefix))
        argv = [
            self.binary,
            "--threads=1",  # wrk shares one core with the sandbox: more threads would only contend
            f"--connections={connections}",
            f"--duration={max(1, round(seconds))}s",
            "--timeout=10s",
            "--latency",
            f"--script={script}",
            base_url,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise WrkFailed(f"{' '.join(argv)} exited with {out.returncode}:\n{out.stdout}{out.stderr}")
        return parse_report(out.stdout)
