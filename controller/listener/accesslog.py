"""An access log that never writes a trigger token.

Trigger URLs carry their secret in the query (``key=`` or the legacy ``token=``), and aiohttp's
default access log writes the request line verbatim, so every hit would leak its token into the
logs. This logger writes its own fixed line instead — no headers at all, so ``Authorization`` can't
appear — with the values of ``key`` and ``token`` replaced, and as a last guard anything shaped like a
JWT replaced too (a token pasted into the path, say). Query names are compared decoded and without
case, so ``?%6Bey=...`` or ``?KEY=...`` are redacted as well.

Every line is at DEBUG: a line per hit costs more CPU than recording the hit durably, and the
listener's summary line (``controller.listener.summary``) counts the hits at INFO instead; requests
of probes and scrapers would bury the hits anyway. ``--log-level DEBUG`` shows them all.

Use it with ``web.AppRunner(app, access_log_class=RedactingAccessLogger)``; the ``log_format`` aiohttp
passes is ignored on purpose, since a format could name the raw request line.

aiohttp's own protocol errors (a request that is not HTTP, a broken chunk size...) are the other way a
token reaches the log: aiohttp logs them at ERROR with a traceback whose exception quotes the raw
request line, ``key=<token>`` included, and it does so for every malformed request, unauthenticated.
``ProtocolLog`` is the logger the listener hands aiohttp instead (``controller.listener.server``):
each record becomes one WARNING line at most (never ERROR: a stranger's bad request is not our
error), without traceback, redacted by ``redact_text`` (values of ``key=``/``token=``, ``Bearer``
credentials, anything JWT-shaped), and at most one per peer per interval (``Throttle``); the next
line of a peer says how many of its lines were left out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "REDACTED"
SECRET_QUERY_NAMES = frozenset({"key", "token"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")
# In free text (an exception quoting a request line or a header): a query pair, or Bearer credentials.
_PAIR = re.compile(r"([^\s?&=;,'\"]+)=([^\s&;,'\"]*)")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s,'\"]+")
_STATUS_PREFIX = re.compile(r"\d{3}, message:")
MAX_LINE = 300  # characters of a protocol error's description


def redact_query(query_string: str) -> str:
    """The raw query string with the values of secret parameters replaced."""
    parts = []
    for part in query_string.split("&"):
        name, sep, _ = part.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_QUERY_NAMES:
            part = f"{name}{sep}{REDACTED}" if sep else part
        parts.append(part)
    return "&".join(parts)


def redact(text: str) -> str:
    return _JWT.sub(REDACTED, text)


def redact_text(text: str) -> str:
    """Free text (an exception message quoting a raw request) with every credential replaced.

    The value after any ``key=`` or ``token=`` (names compared as ``redact_query`` does) up to the
    next separator goes, whatever its shape — a JWT, a truncated one, a Rancher-style 40-character
    key; so do ``Bearer`` credentials and anything JWT-shaped elsewhere.
    """

    def pair(match: re.Match[str]) -> str:
        name = match.group(1)
        if unquote_plus(name).strip().lower() in SECRET_QUERY_NAMES:
            return f"{name}={REDACTED}"
        return match.group(0)

    return redact(_BEARER.sub(rf"\g<1>{REDACTED}", _PAIR.sub(pair, text)))


def one_line(text: str, limit: int = MAX_LINE) -> str:
    """``text`` as one printable line of at most ``limit`` characters (control bytes escaped)."""
    line = " ".join(text.split())
    line = line.encode("ascii", "backslashreplace").decode("ascii")
    line = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def describe_exception(exc: BaseException) -> str:
    """The first line of an exception, without the request data aiohttp quotes below it."""
    message = getattr(exc, "message", None)  # aiohttp's HttpProcessingError keeps the text here
    text = message if isinstance(message, str) else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and _STATUS_PREFIX.fullmatch(lines[0]):  # str() of an HttpProcessingError passed on
        lines = lines[1:]
    first = lines[0].rstrip(":") if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class RedactingAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # aiohttp skips ``log`` (and the redaction work) when this is false; it asks once per connection.
        return self.logger.isEnabledFor(logging.DEBUG)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.DEBUG):
            return
        target = request.rel_url.raw_path
        if request.rel_url.raw_query_string:
            target += "?" + redact_query(request.rel_url.raw_query_string)
        self.logger.debug(
            '%s "%s %s HTTP/%d.%d" %d %d %.1fms',
            request.remote or "-",
            request.method,
            redact(target),
            request.version.major,
            request.version.minor,
            response.status,
            response.body_length,
            time * 1000,
        )


class Throttle:
    """At most one log line per key (a peer address, a kind of event) per ``interval`` seconds.

    ``admit`` answers None for a line to leave out, or how many were left out since the key's last
    line, for that line to say. At most ``max_keys`` keys are remembered: beyond that (a flood from
    many addresses), new keys share one, so the lines stay bounded whatever the number of peers.
    """

    SHARED = "(other peers)"

    def __init__(
        self, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic, max_keys: int = 1024
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (line written at, lines left out since)

    def admit(self, key: str) -> int | None:
        now = self._clock()
        if key not in self._windows and len(self._windows) >= self._max_keys:
            self._forget_before(now - self.interval)
            if len(self._windows) >= self._max_keys:
                key = self.SHARED
        window = self._windows.get(key)
        if window is not None and now - window[0] < self.interval:
            self._windows[key] = (window[0], window[1] + 1)
            return None
        self._windows[key] = (now, 0)
        return window[1] if window is not None else 0

    def left_out(self, count: int, what: str = "") -> str:
        """The suffix a line adds for the ``count`` lines ``admit`` left out before it ("" for none)."""
        return f" ({count} more{what} in the last {self.interval:g}s not logged)" if count else ""

    def _forget_before(self, cutoff: float) -> None:
        self._windows = {key: w for key, w in self._windows.items() if w[0] >= cutoff}


class ProtocolLog(logging.Logger):
    """The ``logger`` aiohttp's ``RequestHandler`` writes to, safe for strangers' requests.

    A detached logger (not registered under its name) that hands its records to ``target``'s
    handlers: each one rewritten to a single redacted line at WARNING at most, no traceback, and
    throttled per peer (the record's ``peer`` attribute, which the listener's protocol adds; records
    without one share a key). Its level is ``target``'s, asked every time.
    """

    def __init__(self, target: logging.Logger, throttle: Throttle) -> None:
        super().__init__(target.name)
        self.parent = target
        self.throttle = throttle

    def isEnabledFor(self, level: int) -> bool:
        # Logger caches levels per instance, and only registered loggers' caches are cleared when a
        # level changes; ask the target instead.
        assert self.parent is not None
        return self.parent.isEnabledFor(level)

    def handle(self, record: logging.LogRecord) -> None:
        peer = str(getattr(record, "peer", None) or "-")
        left_out = self.throttle.admit(f"peer {peer}")
        if left_out is None:
            return
        text = record.getMessage()
        if record.exc_info and record.exc_info[1] is not None:
            text = f"{text}: {describe_exception(record.exc_info[1])}"
        text = one_line(redact_text(text))
        text += self.throttle.left_out(left_out, f" from {peer}")
        record.msg, record.args = text, ()
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        super().handle(record)
