"""Serving the listener: connection hygiene under hostile clients, as uvicorn, gunicorn and nginx do it.

``start_listener(app, settings)`` is the one way ``run`` and ``operator`` serve the listener. Out of
the box aiohttp keeps an idle connection for an hour, waits for a request head or body forever, holds
any number of connections (until the process runs out of file descriptors and every hit, legitimate
ones too, times out), and logs each malformed request with a traceback that quotes its token. Here:

- **Idle** (``keepalive_timeout``, 5 s, uvicorn's default): a connection that has not sent the first
  byte of a request within this long — after connecting, or after its last answer — is closed. This
  is aiohttp's own keep-alive timer, which 3.14 also arms when a connection opens.
- **Request head** (``header_timeout``, 10 s): once a request's first byte is in, its request line
  and headers must be complete within this long, or the connection is closed without an answer (as
  nginx does). nginx's ``client_header_timeout`` is 60 s, sized for people on slow mobile links;
  the senders here are Alertmanager, registries and CI systems, whose heads are a few hundred bytes
  sent at once, and every second allowed is a second a slow-drip client holds a connection slot.
- **Body** (``body_timeout``, 30 s): the whole body must arrive within this long of the handler
  starting to read it, or the hit is answered 408 ``body_timeout`` (``controller.listener.handlers``)
  and the connection closed. A total, not nginx's between-reads timeout, so a body can't drip.
- **Connections** (``max_connections``, 1000): at the cap, a new connection takes the place of the
  longest-idle one (nginx reuses idle keep-alive connections the same way), so idle connections
  can't lock legitimate senders out; when none is idle, the new connection is closed at once, before
  anything is read — cheaper than a 503, and a sender retries either way. The cap is kept within the
  process's open-files limit: the soft limit is raised towards the hard one when needed (as Go's
  runtime does), else the cap is lowered to fit, with a warning.
- **Logs**: aiohttp's protocol errors go through ``ProtocolLog`` (``controller.listener.accesslog``):
  one redacted WARNING line, no traceback, once per peer per minute; a bad request is answered in
  the listener's JSON error shape without quoting it back. asyncio's "socket.accept() out of system
  resource" errors, each a traceback every time a listening socket is retried, are one warning a
  minute with a count.

Also: aiohttp's automatic decompression is off, so the handler decides about ``Content-Encoding``
itself (415 for what it doesn't support, 400 for a broken body) instead of aiohttp failing at the
parser, where a broken deflate body in a second TCP segment was never answered; and a body whose
chunked framing breaks while a handler reads it fails that read (400) instead of hanging it.

The connection rules need hooks aiohttp has no public API for: ``ListenerProtocol`` subclasses its
``RequestHandler`` and reads a few of its private attributes (``_waiter``, ``_messages``,
``_request_count``, ``_current_request``) as they are in aiohttp 3.14. tests/test_listener_hostile.py
holds each rule, so an aiohttp upgrade that changes them fails there.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler, RequestPayloadError, _ErrInfo

from controller.listener.accesslog import ProtocolLog, RedactingAccessLogger, Throttle
from controller.listener.errors import error_response, protocol_error
from controller.settings import Settings

logger = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds: at most one line per peer (or per kind of event) in this long
ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message (selector_events.py)
BACKLOG = 128  # connections the kernel queues for accept; asyncio also accepts up to this many at once
# Open files kept free of connections. Under a flood asyncio accepts a whole backlog per loop
# iteration, and an accepted socket reaches the guard (to be refused, or to evict an idle one,
# whose socket closes an iteration later) only two iterations after: with two backlogs in reserve
# a flood of 5,000 connections still hit EMFILE, with three it did not; four for a margin. The
# store, Cattle, Kubernetes, the receivers folder and the logs need files too.
RESERVED_FDS = 4 * BACKLOG + 128
EVICTION_SCAN = 16  # idle candidates looked at before refusing a connection at the cap


class ConnectionGuard:
    """One listener's open connections, its cap and its timeouts; the protocols report to it."""

    def __init__(
        self, *, max_connections: int, header_timeout: float, throttle: Throttle, log: logging.Logger
    ) -> None:
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.throttle = throttle
        self.log = log
        self._open: dict[ListenerProtocol, None] = {}
        self._idle: dict[ListenerProtocol, None] = {}  # candidates for eviction, longest idle first

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def idle(self) -> int:
        """Open connections waiting for a request, not one byte of it in yet."""
        return sum(protocol.is_idle for protocol in self._idle)

    def admit(self, protocol: ListenerProtocol) -> bool:
        """Whether a new connection may stay open: under the cap, or in an idle one's place."""
        if len(self._open) >= self.max_connections and not self._evict_idle():
            self.note(
                "cap",
                "refused a connection: %d are open, the cap (--max-connections) is reached",
                self.max_connections,
            )
            return False
        self._open[protocol] = None
        self._idle[protocol] = None
        return True

    def rest(self, protocol: ListenerProtocol) -> None:
        """``protocol`` answered and may now wait for its next request: last in line for eviction."""
        if protocol in self._open:
            self._idle.pop(protocol, None)
            self._idle[protocol] = None

    def busy(self, protocol: ListenerProtocol) -> None:
        self._idle.pop(protocol, None)

    def forget(self, protocol: ListenerProtocol) -> None:
        self._open.pop(protocol, None)
        self._idle.pop(protocol, None)

    def note(self, key: str, message: str, *args: object) -> None:
        """A warning, at most one per ``key`` per interval; the next one counts those left out."""
        left_out = self.throttle.admit(key)
        if left_out is None:
            return
        message += self.throttle.left_out(left_out, " like it")
        self.log.warning(message, *args)

    def _evict_idle(self) -> bool:
        # Candidates that are not idle right now (still answering, or not started yet) stay in line.
        for protocol in list(self._idle)[:EVICTION_SCAN]:
            if protocol.is_idle:
                self.forget(protocol)
                protocol.force_close()
                self.note(
                    "evict",
                    "the connection cap (%d) is reached: closed the longest idle connection for a new one",
                    self.max_connections,
                )
                return True
        return False


class ListenerProtocol(RequestHandler):
    """aiohttp's request handler with the guard's rules: cap, head timeout, safe error answers."""

    __slots__ = ("_body_failed", "_guard", "_head_started", "_head_timer", "_refused")

    def __init__(self, manager: web.Server, *, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._refused = False
        self._head_started = False  # the first bytes of a request head are in, not the whole head
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_failed = False

    @property
    def is_idle(self) -> bool:
        """Waiting for the next request, not one byte of it in yet."""
        waiter = self._waiter
        return not self._head_started and waiter is not None and not waiter.done() and not self._messages

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._guard.admit(self):
            self._refused = True
            transport.close()
            return
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.forget(self)
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        awaiting = self.is_idle
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._head_complete()
        elif awaiting and data:
            self._head_begins()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        answered = await super().finish_response(request, resp, start_time)
        if resp.status == 408 or self._body_failed:
            # The rest of this body is never coming, or is garbage: close now rather than linger
            # (up to 10 s) reading it.
            self.force_close()
        else:
            self._guard.rest(self)
        return answered

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """Answer a request aiohttp could not parse (or a failure outside any handler) safely.

        aiohttp logs these with a traceback that quotes the raw request and answers with that
        quote; here the log line goes through ``ProtocolLog`` and the answer is our JSON error.
        """
        # Like aiohttp: non-HTTP traffic (TLS to this port, scanners) as the first request is noise.
        first_and_not_http = self._request_count == 1 and isinstance(exc, BadHttpMethod)
        level = logging.DEBUG if first_and_not_http else logging.WARNING
        self.logger.log(
            level, "request from %s answered %d", request.remote, status, exc_info=exc, extra=self._extra()
        )
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was already being sent; cannot send the error answer")
        response = error_response(protocol_error(status))
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("extra", self._extra())
        self.logger.exception(*args, **kw)

    def _extra(self) -> dict[str, object]:
        peer = self.peername
        return {"peer": peer[0] if isinstance(peer, tuple) else peer}

    def _head_begins(self) -> None:
        self._head_started = True
        self._guard.busy(self)
        # The idle timer (aiohttp's keep-alive) no longer applies: the head timer does.
        self.keep_alive(True)
        self._head_timer = self._loop.call_later(self._guard.header_timeout, self._head_timed_out)

    def _head_complete(self) -> None:
        self._head_started = False
        self._stop_head_timer()
        self._guard.busy(self)
        self._fail_body_being_read()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_started and self.transport is not None:
            peer = self._extra()["peer"]
            self._guard.note(
                f"head {peer}",
                "closed a connection from %s: no complete request head within %gs",
                peer,
                self._guard.header_timeout,
            )
            self.force_close()

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _fail_body_being_read(self) -> None:
        """A parse error in the body of a request being handled: fail its read instead of hanging it.

        aiohttp's parser reports an error in a request's body framing (a broken chunk size in a
        later TCP segment) as a new bad request queued behind the current one, and leaves the
        current request's body waiting for bytes that will never come.
        """
        request = self._current_request
        if request is None or not self._messages:
            return
        error, _ = self._messages[-1]
        if isinstance(error, _ErrInfo) and not request.content.is_eof():
            request.content.set_exception(RequestPayloadError(error.message))
            self._body_failed = True


class ListenerServer(web.Server):
    """aiohttp's ``Server`` (built by ``AppRunner``), making ``ListenerProtocol``s."""

    def __init__(self, base: web.Server, guard: ConnectionGuard) -> None:
        super().__init__(
            base.request_handler,
            request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation,
            loop=base._loop,
            **base._kwargs,
        )
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return ListenerProtocol(self, loop=self._loop, guard=self.guard, **self._kwargs)


class ListenerRunner(web.AppRunner):
    """``AppRunner`` whose server makes ``ListenerProtocol``s: start the app as aiohttp does, then wrap."""

    __slots__ = ("after_cleanup", "guard")

    def __init__(self, app: web.Application, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard
        self.after_cleanup: Callable[[], None] | None = None

    async def _make_server(self) -> web.Server:
        return ListenerServer(await super()._make_server(), self.guard)

    async def cleanup(self) -> None:
        try:
            await super().cleanup()
        finally:
            if self.after_cleanup is not None:
                self.after_cleanup()
                self.after_cleanup = None


def listener_runner(
    app: web.Application, settings: Settings, *, throttle: Throttle | None = None, **kwargs: Any
) -> ListenerRunner:
    """The runner ``start_listener`` uses, for a site of one's own (tests serve it on a test server).

    ``kwargs`` go to aiohttp's ``RequestHandler`` after the listener's own options.
    """
    throttle = throttle or Throttle(LOG_INTERVAL)
    guard = ConnectionGuard(
        max_connections=settings.max_connections,
        header_timeout=settings.header_timeout,
        throttle=throttle,
        log=logger,
    )
    options: dict[str, Any] = {
        "access_log_class": RedactingAccessLogger,
        "logger": ProtocolLog(logger, throttle),
        "keepalive_timeout": settings.keepalive_timeout,
        "auto_decompress": False,  # the handler decodes Content-Encoding itself, within its limits
        **kwargs,
    }
    return ListenerRunner(app, guard, **options)


async def start_listener(
    app: web.Application, settings: Settings, *, clock: Callable[[], float] = time.monotonic
) -> web.AppRunner:
    """Serve ``app`` on ``settings.listen_host:listen_port`` with the connection rules above.

    ``clock`` times the log throttle (tests move it). Stop with the runner's ``cleanup()``.
    """
    check_limits(settings)
    settings = dataclasses.replace(settings, max_connections=fit_open_files(settings.max_connections))
    throttle = Throttle(LOG_INTERVAL, clock=clock)
    runner = listener_runner(app, settings, throttle=throttle)
    runner.after_cleanup = limit_accept_errors(asyncio.get_running_loop(), throttle)
    try:
        await runner.setup()
        await web.TCPSite(runner, settings.listen_host, settings.listen_port, backlog=BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


def check_limits(settings: Settings) -> None:
    for name in ("keepalive_timeout", "header_timeout", "body_timeout", "max_connections"):
        if not getattr(settings, name) > 0:
            raise ValueError(f"{name} must be above 0, not {getattr(settings, name)}")


def fit_open_files(wanted: int) -> int:
    """The connection cap that fits the open-files limit, raising the soft limit if it must and can."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + RESERVED_FDS
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return wanted
    raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft >= needed:
        logger.info("raised the open files limit to %d for %d connections", soft, wanted)
        return wanted
    fitted = max(1, soft - RESERVED_FDS)
    logger.warning(
        "the open files limit is %d (hard %d): serving at most %d connections, not %d",
        soft,
        hard,
        fitted,
        wanted,
    )
    return fitted


def limit_accept_errors(loop: asyncio.AbstractEventLoop, throttle: Throttle) -> Callable[[], None]:
    """Make asyncio's accept errors one warning per interval; returns what undoes it.

    When ``accept()`` fails for lack of file descriptors or memory, asyncio logs an ERROR with a
    traceback and retries a second later, for every listening socket, for as long as it lasts.
    Everything else goes to the loop's previous exception handler (or its default one).
    """
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") != ACCEPT_ERROR:
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)
            return
        left_out = throttle.admit("accept")
        if left_out is None:
            return
        logger.warning(
            "cannot accept connections: %s; retrying every second%s",
            context.get("exception"),
            throttle.left_out(left_out),
        )

    loop.set_exception_handler(handle)

    def restore() -> None:
        if loop.get_exception_handler() is handle:
            loop.set_exception_handler(previous)

    return restore
