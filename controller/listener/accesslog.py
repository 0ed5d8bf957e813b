"""An access log that never writes a trigger token.

Trigger URLs carry their secret in the query (``key=`` or the legacy ``token=``), and aiohttp's
default access log writes the request line verbatim, so every hit would leak its token into the
logs. This logger writes its own fixed line instead — no headers at all, so ``Authorization`` can't
appear — with the values of ``key`` and ``token`` replaced, and as a last guard anything shaped like a
JWT replaced too (a token pasted into the path, say). Query names are compared decoded and without
case, so ``?%6Bey=...`` or ``?KEY=...`` are redacted as well.

Use it with ``web.AppRunner(app, access_log_class=RedactingAccessLogger)``; the ``log_format`` aiohttp
passes is ignored on purpose, since a format could name the raw request line.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

REDACTED = "REDACTED"
SECRET_QUERY_NAMES = frozenset({"key", "token"})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


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


class RedactingAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # aiohttp skips ``log`` (and the redaction work) when this is false.
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        target = request.rel_url.raw_path
        if request.rel_url.raw_query_string:
            target += "?" + redact_query(request.rel_url.raw_query_string)
        self.logger.info(
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
