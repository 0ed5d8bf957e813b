"""Real processes for end-to-end tests, on the toolkit the benchmarks share (``bench/processes.py``),
plus what only tests need: receivers and seeds on disk, the sandbox's scale, a polling wait, the CLI.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from bench import processes
from bench.processes import (
    REPO,
    WEBHOOK_SERVICE,
    Process,
    Sandbox,
    free_port,
    http_status,
    write_receiver,
)
from controller.store.sqlite_schema import DB_NAME
from controller.store.sqlite_snapshot import read_snapshot

__all__ = [
    "REPO",
    "WEBHOOK_SERVICE",
    "Process",
    "Sandbox",
    "Service",
    "free_port",
    "http_status",
    "run_cli",
    "sandbox_scale",
    "write_receiver",
    "write_seed",
]


class Service(processes.Service):
    """``webhook-service run`` as the tests run it: a full reconcile pass every second."""

    FLAGS = ("--resync-interval", "1")

    def has_receiver(self, key: str) -> bool:
        """Whether the running service has a token for the receiver (read from its store, read-only)."""
        return any(t.receiver == key for t in read_snapshot(self.state / DB_NAME).tokens)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEBHOOK_SERVICE, *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def write_seed(path: Path, scale: int = 1, worker: int = 2) -> Path:
    path.write_text(
        "projects:\n"
        "  - id: 1a5\n"
        "    name: Default\n"
        "    services:\n"
        f"      - {{id: 1s7, name: web, stackId: 1st1, scale: {scale}}}\n"
        f"      - {{id: 1s8, name: worker, stackId: 1st1, scale: {worker}}}\n"
    )
    return path


def sandbox_scale(sandbox: Sandbox, service: str = "1s7") -> int:
    with urllib.request.urlopen(f"{sandbox.url}/projects/1a5/services/{service}", timeout=2) as answer:
        scale: int = json.load(answer)["scale"]
        return scale
