"""The listener's views: the trigger endpoint, health and readiness (``/metrics`` is in ``app``).

The trigger endpoint checks a hit in a fixed order, cheapest and most telling first: where the
token is, whether it verifies (which names the receiver), the sender's signature when the receiver
requires one (``spec.signature``: the body is read for it, and the same bytes are parsed later),
whether it is the receiver's current token, the headers, and only then the body. A Rancher 1.6 URL
(``?key=<key>&projectId=``, or ``?token=`` signed by Cattle) of an imported receiver verifies into the
claims of that receiver's current token (``controller.tokens.check_rancher``). An unsigned hit
thus costs nothing but a 401: it does not count against the rate limit, and is not recorded.

The driver's capabilities (``controller.drivers.contract``) decide the rest. Pass-through drivers
(``Forwarder``, e.g. forwardPost) leave right after the current-ness check: their rate limit is
counted here (``RateLimiter``), since no store sees them; the hit is forwarded and answered with the
upstream's answer, and nothing is recorded. Body-reading drivers (``BodyReader``, e.g. serviceUpgrade)
decide from the body whether the hit acts and what its intent is, instead of the Alertmanager parsing
and ``Scaler.intent``; everything else (suspend, idempotency, cooldown, rate limit, recording) is the
same.

The view never decides a hit's outcome itself beyond what the receiver's spec says (suspended, or
an Alertmanager status outside ``fireOn``): idempotency, Alertmanager retries, cooldown and the rate
limit are decided by ``store.record_hit`` in the same transaction that records the hit, so it
answers 200 only once the hit is durable, and 429 when the store raises ``HitRateLimited``.

Every request gets a defined answer, never a 5xx for the client's mistake nor a hang:

- The body is read within ``settings.body_timeout`` (408 ``body_timeout``), and decoded here, not by
  aiohttp (the listener's server turns that off): ``Content-Encoding`` ``gzip`` (``x-gzip``),
  ``deflate`` (zlib or raw) and ``identity`` only, one coding at most — anything else, ``br`` and
  ``zstd`` included, is 415 ``unsupported_encoding``; a body that doesn't decode, is cut short or
  breaks its chunked framing is 400 ``malformed_body``; its decoded size counts against
  ``max_body_bytes`` (413), so a small compressed body can't inflate past it. Behind a server that
  decompresses anyway (aiohttp's test server), the decoded body is taken as it comes.
- Credentials are never chosen among: two different tokens anywhere in one request — several
  ``Authorization: Bearer`` headers, ``key=``, ``token=`` — are 400 ``ambiguous_token``; the same token
  repeated is one token. Likewise the idempotency key: ``Idempotency-Key`` and ``webhook-id`` headers
  (either repeated, or both) that disagree are 400 ``malformed_header``; agreeing ones are one key.

Views raise errors rather than answer them: ``HttpError`` where only the view knows the answer, else
the failing boundary's own error (a ``TokenError``, ``SignatureError``, ``MalformedBody``...), which
``controller.listener.errors.http_error`` turns into the answer.

Views are methods of ``Handlers``, which holds the listener's dependencies explicitly (built by
``controller.listener.app.build_app``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from controller.drivers.contract import (
    BodyReader,
    ForwardedHit,
    Forwarder,
    ForwardError,
    forwarded_headers,
    forwarded_query,
)
from controller.health import Health
from controller.listener import signature
from controller.listener.alertmanager import AlertmanagerPayload, dedupe_key, parse_payload
from controller.listener.deps import ListenerDeps
from controller.listener.errors import HttpError, http_error, internal_error
from controller.listener.ratelimit import RateLimiter, retry_after_header
from controller.listener.summary import HitSummary
from controller.model import ActiveReceiver, Disposition, Receiver, TokenClaims
from controller.store.base import HitRateLimited, HitRequest, StoreUnavailable
from controller.tokens import TokenError, check_current, check_rancher

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY = 255
IDEMPOTENCY_HEADERS = ("Idempotency-Key", "webhook-id")
SINGLE_QUERY_PARAMS = ("key", "token", "projectId")
# Content codings the listener decodes, with zlib's window bits for each (deflate: see _decoder).
CONTENT_CODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


@dataclass(frozen=True)
class Body:
    """What the body says: an Alertmanager payload, or nothing the listener needs to read."""

    alertmanager: AlertmanagerPayload | None


class Handlers:
    def __init__(self, deps: ListenerDeps, limiter: RateLimiter, health: Health, summary: HitSummary) -> None:
        self.deps = deps
        self.limiter = limiter
        self.health = health
        self.summary = summary

    async def trigger(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        try:
            return await self._trigger(request)
        except Exception as e:
            answer = http_error(e) or internal_error()
            self.deps.metrics.hit_errors.labels(str(answer.status), answer.code).inc()
            self.summary.refused(answer.status, answer.code)
            raise
        finally:
            self.deps.metrics.hit_latency.observe(time.perf_counter() - started)

    async def _trigger(self, request: web.Request) -> web.Response:
        claims = self._verify_token(request)
        current = self.deps.receiver_set.get(claims.receiver_key)
        raw: bytes | None = None
        if current is not None and current.receiver.signature is not None:
            raw = await self._read_body(request)
            await self._check_signature(current.receiver, request, raw)
        active = self._check_current(claims, current, request)
        receiver = active.receiver
        if active.refusal is not None:
            raise HttpError(
                409, "receiver_not_ready", f"Receiver {receiver.key} is not ready: {active.refusal}."
            )
        drivers = self.deps.drivers
        forwarder = drivers.forwarders.get(receiver.driver)
        if forwarder is not None:
            self._check_rate_limit(receiver)
            return await self._forward(forwarder, receiver, request, raw)
        idempotency_key = _idempotency_key(request)
        raw_body = raw if raw is not None else await self._read_body(request)
        intent: dict[str, Any] | None = None
        alertmanager: AlertmanagerPayload | None = None
        reader = drivers.readers.get(receiver.driver)
        if reader is not None:
            disposition, reason, intent = _decide(reader, receiver, raw_body, request.content_type)
        else:
            body = _parse_body(request, raw_body)
            alertmanager = body.alertmanager
            disposition, reason = _disposition(receiver, body)
            if disposition == "act":
                intent = drivers.scalers[receiver.driver].intent(receiver.spec).to_json()
        hit = HitRequest(
            receiver=receiver.key,
            receiver_uid=active.uid,
            target_id=receiver.target.id,
            disposition=disposition,
            reason=reason,
            intent=intent,
            idempotency_key=idempotency_key,
            dedupe_key=dedupe_key(alertmanager) if alertmanager is not None else None,
            dedupe_window=receiver.dedupe_window_seconds,
            cooldown=receiver.cooldown_seconds,
            received_at=self.deps.clock(),
            rate_limit=receiver.rate_limit,
        )
        try:
            result = await self.deps.store.record_hit(hit)
        except HitRateLimited as e:
            raise self._rate_limited(receiver, e.retry_after) from e
        except StoreUnavailable as e:
            # DEBUG: the store logs the failure once when it begins; a line per refused hit would
            # turn an outage into a log flood (webhook_hit_errors_total counts them).
            logger.debug("cannot record a hit of %s: %s", receiver.key, e)
            raise
        # DEBUG: a line per hit costs more than recording it; ``summary`` makes the INFO line a minute.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "hit %s of %s: %s%s",
                result.hit_id,
                receiver.key,
                result.outcome,
                f" ({reason})" if reason else "",
            )
        self.deps.metrics.hits.labels(receiver.key, result.outcome).inc()
        self.summary.hit(result.outcome)
        if result.outcome == "accepted":
            self.deps.wake(receiver.target.id)
        return web.json_response({"receiver": receiver.key, "outcome": result.outcome, "hit": result.hit_id})

    async def _forward(
        self, forwarder: Forwarder, receiver: Receiver, request: web.Request, raw: bytes | None
    ) -> web.Response:
        """Answer with the upstream's answer; record nothing (a pass-through is not an intent)."""
        if receiver.suspend:
            self.deps.metrics.hits.labels(receiver.key, "suspended").inc()
            self.summary.hit("suspended")
            return web.json_response({"receiver": receiver.key, "outcome": "suspended", "hit": None})
        body = raw if raw is not None else await self._read_body(request)
        hit = ForwardedHit(
            body=body,
            content_type=request.headers.get("Content-Type", ""),
            query=forwarded_query(list(request.query.items())),
            headers=forwarded_headers(request.headers.items(), _find_token(request)),
        )
        if self.deps.driver_ctx is None:
            raise ForwardError("No Cattle is configured to forward through.")
        answer = await forwarder.forward(receiver, hit, self.deps.driver_ctx)
        logger.debug("hit of %s forwarded: upstream answered %d", receiver.key, answer.status)
        self.deps.metrics.hits.labels(receiver.key, "forwarded").inc()
        self.summary.hit("forwarded")
        headers = {
            "Content-Type": answer.content_type or "application/octet-stream",
            "X-Webhook-Forwarded": "1",
        }
        return web.Response(status=answer.status, body=answer.body, headers=headers)

    def _verify_token(self, request: web.Request) -> TokenClaims:
        token = _find_token(request)
        verifier = self.deps.verifier
        try:
            rancher = verifier.rancher_credential(token, request.query.get("projectId"))
            if rancher is None:
                return verifier.verify(token)
            return check_rancher(rancher, self.deps.receiver_set.by_rancher_digest(rancher.digest))
        except TokenError as e:
            _log_rejected_token(e)
            raise

    def _check_current(
        self, claims: TokenClaims, current: ActiveReceiver | None, request: web.Request
    ) -> ActiveReceiver:
        try:
            return check_current(claims, current, request.query.get("projectId"))
        except TokenError as e:
            _log_rejected_token(e)
            raise

    async def _check_signature(self, receiver: Receiver, request: web.Request, raw: bytes) -> None:
        spec = receiver.signature
        assert spec is not None
        try:
            secret = await self.deps.signatures.secret(receiver)
            signature.verify(spec["scheme"], secret, request.headers, raw, self.deps.clock())
        except signature.SignatureError as e:
            logger.warning("rejected a hit of %s: %s (%s)", receiver.key, e.code, e)
            raise

    def _check_rate_limit(self, receiver: Receiver) -> None:
        """A pass-through hit's rate limit; a recorded hit's is the store's."""
        if receiver.rate_limit is None:
            return
        wait = self.limiter.acquire(receiver.key, receiver.rate_limit)
        if wait is not None:
            raise self._rate_limited(receiver, wait)

    def _rate_limited(self, receiver: Receiver, wait: float) -> HttpError:
        limit = receiver.rate_limit
        assert limit is not None
        return HttpError(
            429,
            "rate_limited",
            f"Receiver {receiver.key} allows {limit.requests} hits per {limit.per_seconds:g}s; retry later.",
            {"Retry-After": retry_after_header(wait)},
        )

    async def _read_body(self, request: web.Request) -> bytes:
        """The body as sent before any Content-Encoding, read within the body timeout and size limit."""
        coding = _content_coding(request)
        limit = self.deps.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit)
        timeout = self.deps.settings.body_timeout
        try:
            async with asyncio.timeout(timeout):
                raw = await request.read()
        except TimeoutError as e:
            raise HttpError(408, "body_timeout", f"The body did not arrive within {timeout:g} s.") from e
        except web.HTTPRequestEntityTooLarge as e:
            raise _too_large(limit) from e
        except web.RequestPayloadError as e:
            raise HttpError(400, "malformed_body", "The body's framing or encoding is broken.") from e
        except ConnectionError as e:  # the sender went away mid-body; nobody reads this answer
            raise HttpError(400, "malformed_body", "The connection closed before the body ended.") from e
        if coding is None or not raw or request.content.total_compressed_bytes is not None:
            return raw  # nothing to decode, or the server decoded it already
        return _decode(raw, coding, limit)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        body = self.health.report()
        return web.json_response(body, status=503 if body["failing"] else 200)


def _log_rejected_token(error: TokenError) -> None:
    logger.warning("rejected a trigger token: %s (%s)", error.code, error)


def _parse_body(request: web.Request, raw: bytes) -> Body:
    if not raw or not _is_json(request.content_type):
        return Body(alertmanager=None)
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: absurdly nested arrays
        raise HttpError(400, "malformed_body", "The body is declared JSON but does not parse.") from e
    return Body(alertmanager=parse_payload(data))


def _find_token(request: web.Request) -> str:
    """The one token the request carries; the header wins only when it agrees with the query."""
    for name in SINGLE_QUERY_PARAMS:
        if len(request.query.getall(name, [])) > 1:
            raise HttpError(400, "malformed_query", f"The query names '{name}' more than once.")
    candidates: list[str] = []
    for authorization in request.headers.getall("Authorization", []):
        scheme, _, credentials = authorization.partition(" ")
        # Other schemes (e.g. Basic added by a proxy or Alertmanager's http_config) are not ours to judge.
        if scheme.lower() == "bearer" and credentials.strip():
            candidates.append(credentials.strip())
    candidates.extend(value for name in ("key", "token") if (value := request.query.get(name, "")))
    if not candidates:
        raise HttpError(
            401, "token_missing", "No token: use the trigger URL's key= or an Authorization header."
        )
    if len(set(candidates)) > 1:
        raise HttpError(400, "ambiguous_token", "The request carries several different tokens.")
    return candidates[0]


def _idempotency_key(request: web.Request) -> str | None:
    """The one idempotency key the request names in any of its ``IDEMPOTENCY_HEADERS``, if any."""
    keys: set[str] = set()
    for header in IDEMPOTENCY_HEADERS:
        for value in request.headers.getall(header, []):
            if not 0 < len(value) <= MAX_IDEMPOTENCY_KEY or not all(" " <= c <= "~" for c in value):
                raise HttpError(
                    400,
                    "malformed_header",
                    f"{header} must be 1 to {MAX_IDEMPOTENCY_KEY} printable ASCII characters.",
                )
            keys.add(value)
    if len(keys) > 1:
        names = " and ".join(IDEMPOTENCY_HEADERS)
        raise HttpError(400, "malformed_header", f"The request's {names} headers name different keys.")
    return keys.pop() if keys else None


def _content_coding(request: web.Request) -> str | None:
    """The body's one content coding to undo (None: none), or 415 for any the listener can't decode."""
    codings = [
        coding.strip().lower()
        for header in request.headers.getall("Content-Encoding", [])
        for coding in header.split(",")
    ]
    codings = [coding for coding in codings if coding and coding != "identity"]
    if len(codings) > 1 or (codings and codings[0] not in CONTENT_CODINGS):
        raise HttpError(
            415,
            "unsupported_encoding",
            "Content-Encoding must be gzip, deflate or identity (one coding at most).",
            {"Accept-Encoding": "gzip, deflate, identity"},
        )
    return codings[0] if codings else None


def _decode(raw: bytes, coding: str, limit: int) -> bytes:
    """Undo ``coding``; at most ``limit`` bytes come out, so a small body can't inflate past the limit."""
    malformed = HttpError(400, "malformed_body", f"The body is not valid {coding} data.")
    out = bytearray()
    data = raw
    while data:  # gzip bodies may be several members in a row
        decoder = _decoder(coding, data)
        try:
            out += decoder.decompress(data, limit + 1 - len(out))
        except zlib.error as e:
            raise malformed from e
        if len(out) > limit:
            raise _too_large(limit)
        if not decoder.eof:
            raise malformed  # cut short
        data = decoder.unused_data
        if data and coding == "deflate":
            raise malformed  # bytes after the end of the stream
    return bytes(out)


def _decoder(coding: str, data: bytes) -> zlib._Decompress:
    wbits = CONTENT_CODINGS[coding]
    # RFC 9110's deflate is the zlib format, but many senders send raw deflate: tell them apart by the
    # zlib header's compression method (8), as aiohttp and browsers do.
    if coding == "deflate" and data[0] & 0x0F != 8:
        wbits = -zlib.MAX_WBITS
    return zlib.decompressobj(wbits)


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "body_too_large", f"The body is larger than {limit} bytes.")


def _is_json(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def _decide(
    reader: BodyReader, receiver: Receiver, raw: bytes, content_type: str
) -> tuple[Disposition, str | None, dict[str, Any] | None]:
    """A body-reading driver's decision, once the receiver is known not to be suspended."""
    if receiver.suspend:
        return "suspended", "receiver is suspended", None
    decision = reader.decide(receiver.spec, raw, content_type)
    return decision.disposition, decision.reason, decision.intent


def _disposition(receiver: Receiver, body: Body) -> tuple[Disposition, str | None]:
    if receiver.suspend:
        return "suspended", "receiver is suspended"
    payload = body.alertmanager
    if payload is not None and payload["status"] not in receiver.fire_on:
        fire_on = ", ".join(sorted(receiver.fire_on))
        return "ignored", f"Alertmanager status {payload['status']!r} is not in fireOn [{fire_on}]"
    return "act", None
