"""How log lines look (``--log-format``), and the access log at DEBUG."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from controller.cli import main
from controller.listener.accesslog import REDACTED, RedactingAccessLogger
from controller.logformat import JsonFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("controller.x", logging.WARNING, __file__, 1, message, args, exc_info)


def test_a_json_line_holds_time_level_logger_and_message() -> None:
    line = json.loads(JsonFormatter().format(record("hit %s accepted", "h1")))
    assert line.keys() == {"time", "level", "logger", "message"}
    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "controller.x", "hit h1 accepted")
    assert line["time"].endswith("+00:00")


def test_a_json_line_carries_the_exception_text() -> None:
    line = json.loads(JsonFormatter().format(record("failed", exc=True)))
    assert line["exception"].startswith("Traceback") and "ValueError: boom" in line["exception"]


def test_a_json_line_is_one_line_whatever_the_message() -> None:
    assert "\n" not in JsonFormatter().format(record("two\nlines", exc=True))


def test_the_access_log_line_stays_redacted_in_json(caplog: pytest.LogCaptureFixture) -> None:
    request = make_mocked_request("POST", "/v1-webhooks/endpoint?key=eyJa.eyJb.c2ln&projectId=1a5")
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        RedactingAccessLogger(logging.getLogger("test.access"), "").log(request, web.Response(), 0.0)
    [entry] = caplog.records
    message = json.loads(JsonFormatter().format(entry))["message"]
    assert f"key={REDACTED}" in message and "eyJ" not in message


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/"])
def test_probes_scrapes_and_the_status_page_are_logged_at_debug(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    access = RedactingAccessLogger(logging.getLogger("test.access"), "")
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(make_mocked_request("GET", path), web.Response(), 0.0)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        access.log(make_mocked_request("GET", path), web.Response(), 0.0)
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


def test_hits_are_logged_at_debug_too(caplog: pytest.LogCaptureFixture) -> None:
    access = RedactingAccessLogger(logging.getLogger("test.access"), "")
    with caplog.at_level(logging.INFO, logger="test.access"):
        access.log(make_mocked_request("POST", "/v1-webhooks/endpoint"), web.Response(), 0.0)
    assert caplog.records == []
    with caplog.at_level(logging.DEBUG, logger="test.access"):
        access.log(make_mocked_request("POST", "/v1-webhooks/endpoint"), web.Response(), 0.0)
    assert [r.levelname for r in caplog.records] == ["DEBUG"]


def test_an_unknown_log_format_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--log-format", "xml", "crd"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "webhook-service crd: --log-format: expected one of text, json, got 'xml'"
    ]


def test_the_log_format_comes_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WEBHOOK_LOG_FORMAT", "yaml")
    assert main(["crd"]) == 2
    assert "--log-format (from WEBHOOK_LOG_FORMAT): expected one of text, json" in capsys.readouterr().err
