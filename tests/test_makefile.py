"""``make run``'s port: the README's ``make run PORT=9000``, and a ``WEBHOOK_LISTEN`` that is not overridden.

``make -n`` prints the commands without running them, so these read what ``make run`` would start."""

from __future__ import annotations

import os
import re
import subprocess

from tests.processes import REPO


def run_command(*args: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k not in ("PORT", "WEBHOOK_LISTEN")} | env
    answer = subprocess.run(
        ["make", "-n", "run", *args], cwd=REPO, env=environ, capture_output=True, text=True, timeout=30
    )
    assert answer.returncode == 0, answer.stderr
    flat = re.sub(r"\\\n\s*", "", answer.stdout)  # the recipe's continued lines as one
    [command] = [line for line in flat.splitlines() if "webhook-service run" in line]
    return command + " "


def test_make_run_listens_on_8085_by_default() -> None:
    assert "--listen 127.0.0.1:8085 " in run_command()


def test_make_run_port_picks_the_port() -> None:
    assert "--listen 127.0.0.1:9000 " in run_command("PORT=9000")


def test_a_set_webhook_listen_is_not_overridden_unless_port_is_given() -> None:
    assert "--listen" not in run_command(WEBHOOK_LISTEN="127.0.0.1:9100")
    assert "--listen 127.0.0.1:9000 " in run_command("PORT=9000", WEBHOOK_LISTEN="127.0.0.1:9100")
