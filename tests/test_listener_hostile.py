"""The listener under hostile connections: what reaches the log, timeouts, the cap, odd bodies.

The listener is served as ``run`` and ``operator`` serve it — ``start_listener`` on a real loopback
port — over the parts of tests/test_listener.py's ``harness`` (its key ring, store, receiver_set and
receiver), and spoken to over raw sockets where a well-behaved client can't say what is tested.
Timeouts are injected small through the settings; the log throttle's clock is moved by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner
from multidict import CIMultiDict

from controller.listener import TRIGGER_PATH, build_app
from controller.listener.accesslog import ProtocolLog, Throttle, redact_text
from controller.listener.app import LISTENER_DEPS
from controller.listener.server import (
    ACCEPT_ERROR,
    RESERVED_FDS,
    ListenerRunner,
    fit_open_files,
    limit_accept_errors,
    listener_runner,
    start_listener,
)
from controller.listener.signature import SignatureExpired, verify_standard_webhooks
from controller.settings import Settings
from tests.test_listener import (
    MAX_BODY,
    Harness,
    answer,
    assert_error,
    fixture_body,
)
from tests.test_listener import harness as harness  # a fixture
from tests.test_listener_signature import (
    KEY,
    NOW,
    Signed,
    error_code,
)
from tests.test_listener_signature import signed as signed  # a fixture
from tests.toolbox import FakeClock, until

SERVER_LOG = "controller.listener.server"


@dataclasses.dataclass
class Served:
    """The harness's listener on a real port, served by ``start_listener``."""

    runner: ListenerRunner
    harness: Harness
    clock: FakeClock  # the log throttle's

    @property
    def port(self) -> int:
        return int(self.runner.addresses[0][1])

    @property
    def token(self) -> str:
        return self.harness.token

    def request(self, *headers: str, body: bytes = b"", query: str | None = None) -> bytes:
        """A raw POST to the trigger endpoint with the harness's token, closing the connection after."""
        target = f"{TRIGGER_PATH}?{query if query is not None else f'key={self.token}&projectId=1a5'}"
        lines = [f"POST {target} HTTP/1.1", "Host: listener", "Connection: close", *headers]
        if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(harness: Harness) -> AsyncIterator[Serve]:
    """Start the harness's listener with ``start_listener`` and these settings' changes."""
    runners: list[web.AppRunner] = []

    async def start(**changes: Any) -> Served:
        deps = listener_deps(harness)
        settings = dataclasses.replace(deps.settings, listen_host="127.0.0.1", listen_port=0, **changes)
        clock = FakeClock(0.0)
        app = build_app(dataclasses.replace(deps, settings=settings))
        runner = await start_listener(app, settings, clock=clock)
        runners.append(runner)
        assert isinstance(runner, ListenerRunner)
        return Served(runner, harness, clock)

    yield start
    for runner in runners:
        await runner.cleanup()


def listener_deps(harness: Harness) -> Any:
    app = harness.client.app
    assert app is not None
    return app[LISTENER_DEPS]


class ListenerTestServer(TestServer):
    """aiohttp's test server with the listener's runner, so a TestClient talks to what production serves."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        super().__init__(app)
        self.settings = settings

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        return listener_runner(self.app, self.settings, **kwargs)


@pytest.fixture
async def served(harness: Harness, aiohttp_client: Any) -> Harness:
    """The harness, its client talking to the listener's app as ``listener_runner`` serves it."""
    deps = listener_deps(harness)
    client = await aiohttp_client(ListenerTestServer(build_app(deps), deps.settings))
    return dataclasses.replace(harness, client=client)


async def exchange(port: int, *parts: bytes, pause: float = 0.0, within: float = 3.0) -> bytes:
    """Send ``parts`` (``pause`` seconds apart) and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break  # the server closed: what did it say?
        try:
            return await asyncio.wait_for(reader.read(), within)
        except ConnectionError:  # our write after its close got a reset: closed without an answer
            return b""
    finally:
        writer.close()


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def json_of(raw: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(raw.partition(b"\r\n\r\n")[2])
    return data


def records(caplog: pytest.LogCaptureFixture, name: str = SERVER_LOG) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def assert_safe_log(caplog: pytest.LogCaptureFixture, token: str) -> None:
    """No token (nor its signature part), no traceback, nothing at ERROR, nothing from aiohttp.server."""
    signature = token.rsplit(".", 1)[1]
    assert token not in caplog.text and signature not in caplog.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not records(caplog, "aiohttp.server")


# -- (4) tokens never reach the log; protocol errors are one line, throttled


MALFORMED: dict[str, Callable[[str], str]] = {
    "a raw non-ASCII byte": lambda t: f"POST {TRIGGER_PATH}?key={t}\xff HTTP/1.1\r\nHost: x\r\n\r\n",
    "a NUL in the request line": lambda t: f"POST {TRIGGER_PATH}?key={t}\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF line endings": lambda t: f"POST {TRIGGER_PATH}?key={t} HTTP/1.1\nHost: x\n\n",
    "an invalid method": lambda t: f"P@ST {TRIGGER_PATH}?key={t} HTTP/1.1\r\nHost: x\r\n\r\n",
    "a NUL in a header": lambda t: f"POST {TRIGGER_PATH}?key={t} HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "a NUL in the Authorization header": lambda t: (
        f"POST {TRIGGER_PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\x00\r\n\r\n"
    ),
    "an absurd chunk size": lambda t: (
        f"POST {TRIGGER_PATH}?key={t} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "ffffffffffffffffffffff\r\nab\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_request_is_answered_400_and_logged_without_its_token(
    serve: Serve, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    served = await serve()
    with caplog.at_level(logging.DEBUG):
        raw = await exchange(served.port, MALFORMED[case](served.token).encode("latin-1"))
    assert (status_of(raw), json_of(raw)["code"]) == (400, "malformed_request")
    assert served.token.encode() not in raw  # not quoted back either
    assert_safe_log(caplog, served.token)
    [record] = records(caplog)
    assert record.getMessage().startswith("request from 127.0.0.1 answered 400: ")
    assert "\n" not in record.getMessage()


@pytest.mark.parametrize("coding", ["br", "zstd"])
async def test_an_unsupported_content_encoding_is_415_and_logs_no_traceback(
    serve: Serve, caplog: pytest.LogCaptureFixture, coding: str
) -> None:
    served = await serve()
    with caplog.at_level(logging.DEBUG):
        raw = await exchange(served.port, served.request(f"Content-Encoding: {coding}", body=b"abc"))
    assert (status_of(raw), json_of(raw)["code"]) == (415, "unsupported_encoding")
    assert_safe_log(caplog, served.token)


async def test_bad_requests_from_one_peer_are_one_line_per_interval_with_a_count(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve()
    bad = MALFORMED["bare LF line endings"](served.token).encode()
    for _ in range(5):
        await exchange(served.port, bad)
    assert len(records(caplog)) == 1
    served.clock.now += 61
    await exchange(served.port, bad)
    first, second = (r.getMessage() for r in records(caplog))
    assert first.startswith("request from 127.0.0.1 answered 400: BadStatusLine")
    assert second.endswith("(4 more from 127.0.0.1 in the last 60s not logged)")


async def test_the_protocol_log_keeps_the_levels_of_its_target_when_they_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = logging.getLogger("test.protocol")
    log = ProtocolLog(target, Throttle())
    target.setLevel(logging.ERROR)
    assert not log.isEnabledFor(logging.WARNING)
    target.setLevel(logging.NOTSET)
    with caplog.at_level(logging.DEBUG, logger="test.protocol"):
        log.exception("from %s", "peer", exc_info=ValueError("key=secret-value\nmore"), extra={"peer": "p"})
    [record] = records(caplog, "test.protocol")
    assert (record.levelno, record.exc_info, record.getMessage()) == (
        logging.WARNING,
        None,
        "from peer: ValueError: key=REDACTED",
    )


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("b'POST /x?key=eyJh.eyJi.c2ln\\xff HTTP/1.1'", "b'POST /x?key=REDACTED HTTP/1.1'"),
        ("/x?projectId=1a5&KEY=" + "a1" * 20 + " HTTP/1.1", "/x?projectId=1a5&KEY=REDACTED HTTP/1.1"),
        ("%6Bey=abc&token=def&other=1", "%6Bey=REDACTED&token=REDACTED&other=1"),
        ("Authorization: Bearer opaque-secret", "Authorization: Bearer REDACTED"),
        ("path /eyJhbGc.eyJzdWI.c2lnbmF0dXJl", "path /REDACTED"),
    ],
)
def test_free_text_is_redacted(text: str, redacted: str) -> None:
    assert redact_text(text) == redacted


# -- (6) idle and slow connections, the cap, accept errors


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(serve: Serve) -> None:
    served = await serve(keepalive_timeout=0.2)
    assert await exchange(served.port) == b""


async def test_a_kept_alive_connection_is_closed_after_the_keepalive_timeout(serve: Serve) -> None:
    served = await serve(keepalive_timeout=0.2)
    raw = await exchange(served.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(raw) == 200  # answered, then closed once idle: read() saw the end


async def test_a_stalled_request_head_is_closed_after_the_header_timeout(serve: Serve) -> None:
    served = await serve(header_timeout=0.2, keepalive_timeout=30)
    assert await exchange(served.port, f"POST {TRIGGER_PATH}?key=".encode()) == b""


async def test_a_trickling_request_head_is_closed_after_the_header_timeout(serve: Serve) -> None:
    served = await serve(header_timeout=0.3, keepalive_timeout=30)
    head = served.request()
    assert await exchange(served.port, *(head[i : i + 1] for i in range(40)), pause=0.05) == b""


async def test_a_head_begun_within_the_keepalive_timeout_has_the_header_timeout(serve: Serve) -> None:
    served = await serve(keepalive_timeout=0.5, header_timeout=10)
    head = served.request()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
    try:
        await asyncio.sleep(0.1)
        writer.write(head[:10])
        await asyncio.sleep(1.0)  # past the keepalive timeout, within the header timeout
        writer.write(head[10:])
        raw = await asyncio.wait_for(reader.read(), 3)
    finally:
        writer.close()
    assert status_of(raw) == 200


async def test_a_stalled_body_with_a_valid_token_is_408_body_timeout(serve: Serve) -> None:
    served = await serve(body_timeout=0.2)
    raw = await exchange(served.port, served.request("Content-Length: 100") + b"0123456789")
    assert (status_of(raw), json_of(raw)["code"]) == (408, "body_timeout")
    assert await served.harness.store.pending_intents(served.harness.target_id) == []


async def test_over_the_cap_a_new_connection_is_closed_at_once_and_open_ones_still_work(
    serve: Serve,
) -> None:
    served = await serve(max_connections=2, header_timeout=30)
    head = served.request()
    streams = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
    for _, writer in streams:
        writer.write(head[:20])  # busy: a head in progress is never evicted
    guard = served.runner.guard
    await until(lambda: (guard.open, guard.idle) == (2, 0), within=3, what="2 busy connections")
    assert await exchange(served.port, head, within=1.0) == b""
    reader, writer = streams[0]
    writer.write(head[20:])
    assert status_of(await asyncio.wait_for(reader.read(), 3)) == 200
    for _, writer in streams:
        writer.close()


async def test_at_the_cap_a_new_connection_takes_the_place_of_the_longest_idle_one(serve: Serve) -> None:
    served = await serve(max_connections=2, keepalive_timeout=30)
    idle = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(2)]
    guard = served.runner.guard
    await until(lambda: (guard.open, guard.idle) == (2, 2), within=3, what="2 idle connections")
    raw = await exchange(served.port, served.request())
    assert (status_of(raw), json_of(raw)["outcome"]) == (200, "accepted")
    assert await asyncio.wait_for(idle[0][0].read(), 3) == b""  # the first one made room
    for _, writer in idle:
        writer.close()


async def test_accept_errors_are_one_warning_per_interval_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = asyncio.get_running_loop()
    original = loop.get_exception_handler()
    others: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: others.append(context))
    clock = FakeClock(0.0)
    restore = limit_accept_errors(loop, Throttle(60, clock=clock))
    error = {"message": ACCEPT_ERROR, "exception": OSError(errno.EMFILE, "Too many open files")}
    try:
        for _ in range(5):
            loop.call_exception_handler(error)
        clock.now += 61
        loop.call_exception_handler(error)
        loop.call_exception_handler({"message": "something else"})
    finally:
        restore()
        loop.set_exception_handler(original)
    lines = [(r.levelno, r.exc_info, r.getMessage()) for r in records(caplog)]
    assert lines == [
        (
            logging.WARNING,
            None,
            "cannot accept connections: [Errno 24] Too many open files; retrying every second",
        ),
        (
            logging.WARNING,
            None,
            "cannot accept connections: [Errno 24] Too many open files; retrying every second"
            " (4 more in the last 60s not logged)",
        ),
    ]
    assert others == [{"message": "something else"}]


async def test_start_listener_throttles_accept_errors(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    await serve()
    loop = asyncio.get_running_loop()
    for _ in range(3):
        loop.call_exception_handler({"message": ACCEPT_ERROR, "exception": OSError(errno.EMFILE, "x")})
    assert len(records(caplog)) == 1


def test_the_cap_is_fitted_to_an_open_files_limit_that_cannot_be_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import resource

    def refuse(*_: object) -> None:
        raise ValueError("not allowed")

    monkeypatch.setattr(resource, "getrlimit", lambda _what: (1024, 1024))
    monkeypatch.setattr(resource, "setrlimit", refuse)
    assert fit_open_files(1000) == 1024 - RESERVED_FDS
    assert f"serving at most {1024 - RESERVED_FDS} connections, not 1000" in caplog.text


def test_the_open_files_limit_is_raised_for_the_cap_when_it_can_be(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    calls: list[object] = []
    monkeypatch.setattr(resource, "getrlimit", lambda _what: (1024, 4096))
    monkeypatch.setattr(resource, "setrlimit", lambda what, limits: calls.append(limits))
    assert (fit_open_files(1000), calls) == (1000, [(1000 + RESERVED_FDS, 4096)])


@pytest.mark.parametrize("name", ["keepalive_timeout", "header_timeout", "body_timeout", "max_connections"])
async def test_a_limit_that_is_not_positive_is_refused(serve: Serve, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        await serve(**{name: 0})


# -- (10) every body gets a defined answer


def raw_deflate(data: bytes) -> bytes:
    """Deflate without zlib's header and checksum, as many senders send ``deflate``."""
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


async def test_gzip_declared_over_a_body_that_is_not_gzip_is_400_malformed_body(served: Harness) -> None:
    response = await served.hit(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    await assert_error(response, 400, "malformed_body")


async def test_gzip_declared_over_a_body_that_is_not_gzip_is_400_behind_a_decompressing_server(
    harness: Harness,
) -> None:
    response = await harness.hit(body=b"not gzip at all", headers={"Content-Encoding": "gzip"})
    await assert_error(response, 400, "malformed_body")


async def test_a_broken_deflate_body_in_a_second_segment_is_answered_400(serve: Serve) -> None:
    served = await serve()
    head = served.request("Content-Encoding: deflate", "Content-Length: 3")
    raw = await exchange(served.port, head, b"abc", pause=0.1)
    assert (status_of(raw), json_of(raw)["code"]) == (400, "malformed_body")


async def test_broken_chunked_framing_in_a_second_segment_is_answered_400(serve: Serve) -> None:
    served = await serve()
    head = served.request("Transfer-Encoding: chunked")
    raw = await exchange(served.port, head, b"zz\r\nab\r\n0\r\n\r\n", pause=0.1)
    assert (status_of(raw), json_of(raw)["code"]) == (400, "malformed_body")


@pytest.mark.parametrize(
    ("coding", "compress"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", raw_deflate),
        ("identity", lambda data: data),
    ],
)
async def test_an_encoded_body_is_decoded_before_it_is_read(
    served: Harness, coding: str, compress: Callable[[bytes], bytes]
) -> None:
    body = compress(json.dumps(fixture_body("resolved")).encode())
    headers = {"Content-Encoding": coding, "Content-Type": "application/json"}
    response = await served.hit(body=body, headers=headers)
    assert (await answer(response))["outcome"] == "ignored"  # it was read: a resolved notification


async def test_a_gzip_body_that_inflates_past_the_limit_is_413(served: Harness) -> None:
    response = await served.hit(
        body=gzip.compress(b"0" * (MAX_BODY + 1)), headers={"Content-Encoding": "gzip"}
    )
    await assert_error(response, 413, "body_too_large")


async def test_a_truncated_gzip_body_is_400_malformed_body(served: Harness) -> None:
    response = await served.hit(body=gzip.compress(b"x" * 100)[:-6], headers={"Content-Encoding": "gzip"})
    await assert_error(response, 400, "malformed_body")


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "bogus"])
async def test_an_unsupported_content_encoding_is_415_unsupported_encoding(
    served: Harness, coding: str
) -> None:
    response = await served.hit(body=b"abc", headers={"Content-Encoding": coding})
    await assert_error(response, 415, "unsupported_encoding")
    assert await served.store.pending_intents(served.target_id) == []


@pytest.mark.parametrize("digits", [13, 400, 5000])
async def test_an_absurd_signature_timestamp_is_401_signature_expired(
    signed: Signed,
    digits: int,
) -> None:
    headers = {"webhook-id": "msg_1", "webhook-timestamp": "9" * digits, "webhook-signature": "v1,AAAA"}
    assert await error_code(await signed.hit(headers)) == (401, "signature_expired")


def test_verification_calls_an_absurd_timestamp_expired() -> None:
    with pytest.raises(SignatureExpired):
        verify_standard_webhooks(KEY, "msg_1", "9" * 400, "v1,AAAA", b"", float(NOW))


# -- (11) duplicate headers are never chosen among


def repeated(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


async def test_two_different_bearer_tokens_are_400_ambiguous_token(harness: Harness) -> None:
    headers = repeated(("Authorization", f"Bearer {harness.token}"), ("Authorization", "Bearer other"))
    response = await harness.client.post(TRIGGER_PATH, headers=headers)
    await assert_error(response, 400, "ambiguous_token")
    assert await harness.store.pending_intents(harness.target_id) == []


async def test_a_bearer_token_and_a_different_token_parameter_are_400_ambiguous_token(
    harness: Harness,
) -> None:
    response = await harness.hit(
        query={"token": "other"}, headers={"Authorization": f"Bearer {harness.token}"}
    )
    await assert_error(response, 400, "ambiguous_token")


async def test_the_same_bearer_token_twice_is_one_token(harness: Harness) -> None:
    headers = repeated(
        ("Authorization", f"Bearer {harness.token}"), ("Authorization", f"Bearer {harness.token}")
    )
    response = await harness.client.post(TRIGGER_PATH, headers=headers)
    assert (await answer(response))["outcome"] == "accepted"


@pytest.mark.parametrize(
    "pairs",
    [
        (("Idempotency-Key", "a"), ("Idempotency-Key", "b")),
        (("webhook-id", "a"), ("webhook-id", "b")),
        (("Idempotency-Key", "a"), ("webhook-id", "b")),
    ],
)
async def test_disagreeing_idempotency_keys_are_400_malformed_header(
    harness: Harness,
    pairs: tuple[tuple[str, str], ...],
) -> None:
    response = await harness.hit(headers=repeated(*pairs))  # type: ignore[arg-type]
    await assert_error(response, 400, "malformed_header")
    assert await harness.store.pending_intents(harness.target_id) == []


async def test_agreeing_idempotency_keys_are_one_key(harness: Harness) -> None:
    headers = repeated(("Idempotency-Key", "deploy-7"), ("webhook-id", "deploy-7"))
    first = await answer(await harness.hit(headers=headers))  # type: ignore[arg-type]
    second = await answer(await harness.hit(headers={"Idempotency-Key": "deploy-7"}))
    assert (first["outcome"], second["outcome"], second["hit"]) == ("accepted", "duplicate", first["hit"])
