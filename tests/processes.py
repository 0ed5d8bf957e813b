"""Real processes for end-to-end tests: the ``webhook-service`` command, started as a user would.

One well-made helper instead of a fake server per test: it picks free loopback ports, starts the
console script from the venv, waits until the process answers, captures its output to a file (shown
when a test fails), and stops it with SIGTERM — or SIGKILL, for crash tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from controller.store.sqlite import DB_NAME, read_snapshot

BIN_DIR = Path(sys.executable).parent
WEBHOOK_SERVICE = str(BIN_DIR / "webhook-service")
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


class Process:
    """A child process with its output in ``log_path``."""

    def __init__(
        self, name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        log.close()
        return self

    def wait_http(self, url: str, expect: int = 200, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.output()}")
            if http_status(url) == expect:
                return
            time.sleep(0.05)
        raise TimeoutError(
            f"{self.name} did not answer {expect} at {url} within {timeout}s:\n{self.output()}"
        )

    def wait_ready(self, url: str) -> None:
        """Wait for a 200 at ``url``; a process that never gets there is stopped, not left behind."""
        try:
            self.wait_http(url, expect=200)
        except BaseException:
            self.stop()
            raise

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


class Sandbox(Process):
    def __init__(self, tmp: Path, seed: Path, *extra: str) -> None:
        self.port = free_port()
        super().__init__(
            "cattle-sandbox",
            [
                WEBHOOK_SERVICE,
                "cattle-sandbox",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--seed",
                str(seed),
                *extra,
            ],
            tmp / f"sandbox-{self.port}.log",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v2-beta"

    def start_and_wait(self) -> Sandbox:
        self.start()
        self.wait_ready(self.url)
        return self


class Service(Process):
    def __init__(
        self,
        tmp: Path,
        *,
        receivers: Path,
        state: Path,
        cattle_url: str,
        port: int | None = None,
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        super().__init__(
            "webhook-service",
            [
                WEBHOOK_SERVICE,
                "run",
                "--receivers",
                str(receivers),
                "--state",
                str(state),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--cattle-url",
                cattle_url,
                "--resync-interval",
                "1",
                *extra,
            ],
            tmp / f"service-{self.port}.log",
            env,
        )
        self.state = state

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self) -> Service:
        self.start()
        self.wait_ready(f"{self.base}/readyz")
        return self

    def has_receiver(self, key: str) -> bool:
        """Whether the running service has a token for the receiver (read from its store, read-only)."""
        return any(t.receiver == key for t in read_snapshot(self.state / DB_NAME).tokens)

    def trigger_url(self, name: str, namespace: str = "default") -> str:
        out = subprocess.run(
            [WEBHOOK_SERVICE, "trigger-url", name, "-n", namespace, "--state", str(self.state)],
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        return out.stdout.strip()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WEBHOOK_SERVICE, *args], capture_output=True, text=True, cwd=REPO, timeout=60)


def write_seed(path: Path, scale: int = 1) -> Path:
    path.write_text(
        "projects:\n"
        "  - id: 1a5\n"
        "    name: Default\n"
        "    services:\n"
        f"      - {{id: 1s7, name: web, stackId: 1st1, scale: {scale}}}\n"
        "      - {id: 1s8, name: worker, stackId: 1st1, scale: 2}\n"
    )
    return path


def write_receiver(
    folder: Path,
    name: str,
    *,
    action: str = "up",
    service: str = "1s7",
    amount: int = 1,
    low: int = 0,
    high: int = 1000,
    extra: str = "",
) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        "apiVersion: webhook-service.dev/v1\n"
        "kind: Receiver\n"
        f"metadata: {{name: {name}}}\n"
        "spec:\n"
        "  driver: scaleService\n"
        f"  scaleServiceConfig: {{projectId: 1a5, serviceId: {service}, action: {action}, amount: {amount}, "
        f"min: {low}, max: {high}}}\n" + extra
    )
    return path


def sandbox_scale(sandbox: Sandbox, service: str = "1s7") -> int:
    with urllib.request.urlopen(f"{sandbox.url}/projects/1a5/services/{service}", timeout=2) as answer:
        scale: int = json.load(answer)["scale"]
        return scale


async def eventually(check: Callable[[], bool], within: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} not reached within {within}s")
