"""Real processes: ``webhook-service run`` and ``webhook-service cattle-sandbox``, started as a user would.

The one toolkit of the benchmarks and the end-to-end tests (``tests/processes.py`` builds on it;
bench/ never imports tests/): free loopback ports, the console script from the venv, output captured
to a log file (shown when a wait fails), readiness by polling an HTTP URL, SIGTERM to stop (SIGKILL
if it does not stop within 10 s), and SIGKILL for crash tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Self

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


class ProcessExited(RuntimeError):
    """The process ended while we waited for it to answer."""

    def __init__(self, name: str, returncode: int, output: str) -> None:
        super().__init__(f"{name} exited with {returncode}:\n{output}")
        self.returncode = returncode
        self.output = output


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

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.proc.pid

    def start(self) -> Self:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        log.close()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def wait_http(self, url: str, expect: int = 200, timeout: float = 30.0) -> None:
        """Wait for ``expect`` at ``url``; a process that never gets there is stopped, not left behind."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ProcessExited(self.name, self.proc.returncode, self.output())
                if http_status(url) == expect:
                    return
                time.sleep(0.05)
            raise TimeoutError(
                f"{self.name} did not answer {expect} at {url} within {timeout}s:\n{self.output()}"
            )
        except BaseException:
            self.stop()
            raise

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
    """``webhook-service cattle-sandbox`` on a free port, seeded from ``seed``."""

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

    def start_and_wait(self) -> Self:
        self.start()
        self.wait_http(self.url)
        return self


class Service(Process):
    """``webhook-service run`` on a free port. ``FLAGS`` come before a caller's ``extra`` ones."""

    FLAGS: Sequence[str] = ()

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
                *self.FLAGS,
                *extra,
            ],
            tmp / f"service-{self.port}.log",
            env,
        )
        self.state = state

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_and_wait(self) -> Self:
        self.start()
        self.wait_http(f"{self.base}/readyz")
        return self

    def trigger_url(self, name: str, namespace: str = "default") -> str:
        out = subprocess.run(
            trigger_url_argv(self.state, name, namespace),
            check=True,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        return out.stdout.strip()


def trigger_url_argv(state: Path, name: str, namespace: str = "default") -> list[str]:
    """The command that prints a receiver's trigger URL, as a user would run it."""
    return [WEBHOOK_SERVICE, "trigger-url", name, "-n", namespace, "--state", str(state)]


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
