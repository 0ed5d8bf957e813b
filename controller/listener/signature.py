"""Sender signatures (``spec.signature``): a shared secret proving a hit comes from the expected sender.

The trigger token says *which* receiver a hit is for; a signature says the sender knows the
receiver's shared secret and that the body is the one it signed. Two schemes:

- ``standard-webhooks`` (https://www.standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``
  and ``webhook-signature``, a space-separated list of ``v1,<base64 HMAC-SHA256>`` over
  ``{id}.{timestamp}.{body}``. Several entries let a sender rotate its secret; entries of other
  versions are ignored. The timestamp must be within 5 minutes of now, either way, so a captured
  hit can't be replayed later.
- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.

The verification functions are pure (time is an argument) and compare digests in constant time.
``SignatureSecrets`` finds a receiver's secret: a file (re-read when its mtime changes) or, in
operator mode, the key ``secret`` of a Secret in the receiver's namespace (cached a few seconds, so
a burst of hits costs one API call and a rotated Secret is used within seconds).

Errors carry their HTTP status: the sender's mistakes are 401; a secret the service can't read is
the service's fault, so 503 with ``Retry-After`` — the sender retries and nothing is lost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from controller.errors import WebhookServiceError
from controller.kube.client import SECRETS, KubeClient
from controller.kube.errors import KubeError, KubeNotFound
from controller.model import Receiver

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 5 * 60
MAX_TIMESTAMP_DIGITS = 12  # seconds since the epoch have 10 digits until the year 2286
WHSEC_PREFIX = "whsec_"
GITHUB_ALGORITHM = "sha256"
SECRET_KEY = "secret"  # the key of a secretRef's Secret that holds the shared secret
SECRET_CACHE_SECONDS = 5.0
UNREADABLE = "The receiver's signature secret can't be read; retry later."

STANDARD_WEBHOOKS_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
GITHUB_HEADER = "X-Hub-Signature-256"


class SignatureError(WebhookServiceError):
    """Base of the signature errors: ``status`` and ``code`` are the answer; the message is for people."""

    status = 401

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SignatureMissing(SignatureError):
    def __init__(self, message: str) -> None:
        super().__init__("signature_missing", message)


class SignatureInvalid(SignatureError):
    def __init__(self, message: str) -> None:
        super().__init__("signature_invalid", message)


class SignatureExpired(SignatureError):
    def __init__(self, message: str) -> None:
        super().__init__("signature_expired", message)


class SignatureSecretUnavailable(SignatureError):
    """The receiver's secret can't be read or used: the service's (or its operator's) fault."""

    status = 503
    retryable = True
    retry_after = 5.0

    def __init__(self, message: str) -> None:
        super().__init__("signature_secret_unavailable", message)


def verify_standard_webhooks(
    secret: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signatures_header: str | None,
    body: bytes,
    now: float,
) -> None:
    """Raise unless one of the ``v1`` signatures is the HMAC of ``{id}.{timestamp}.{body}``."""
    if not (msg_id and timestamp and signatures_header):
        given = zip(STANDARD_WEBHOOKS_HEADERS, (msg_id, timestamp, signatures_header), strict=True)
        missing = ", ".join(name for name, value in given if not value)
        raise SignatureMissing(f"The receiver requires a Standard Webhooks signature: {missing} missing.")
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise SignatureInvalid("webhook-timestamp must be whole seconds since the epoch.")
    # More digits than any time near now has can only be far off: no int (which refuses over 4,300
    # digits) and no float arithmetic (which overflows) on them.
    if len(timestamp) > MAX_TIMESTAMP_DIGITS or abs(now - int(timestamp)) > TOLERANCE_SECONDS:
        raise SignatureExpired(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS // 60} minutes from the service's clock."
        )
    entries = (entry.partition(",") for entry in signatures_header.split())
    candidates = [value for version, _, value in entries if version == "v1"]
    if not candidates:
        raise SignatureMissing("webhook-signature holds no v1 signature.")
    signed = b"%s.%s.%s" % (_utf8(msg_id), _utf8(timestamp), body)
    expected = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    if not any(hmac.compare_digest(expected, _b64(candidate)) for candidate in candidates):
        raise SignatureInvalid("No webhook-signature matches the body and the receiver's secret.")


def verify_github(secret: bytes, header: str | None, body: bytes) -> None:
    """Raise unless ``header`` is ``sha256=<hex>`` of HMAC-SHA256(secret, body)."""
    if not header:
        raise SignatureMissing(f"The receiver requires a GitHub signature: {GITHUB_HEADER} missing.")
    algorithm, _, digest = header.strip().partition("=")
    try:
        given = bytes.fromhex(digest)
    except ValueError:
        given = b""
    if algorithm != GITHUB_ALGORITHM or not given:
        raise SignatureInvalid(f"{GITHUB_HEADER} must be {GITHUB_ALGORITHM}=<hex digest>.")
    expected = hmac.new(secret, body, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, given):
        raise SignatureInvalid(f"{GITHUB_HEADER} does not match the body and the receiver's secret.")


def verify(scheme: str, secret: bytes, headers: Mapping[str, str], body: bytes, now: float) -> None:
    """Check a request's signature under ``scheme`` (``spec.signature.scheme``)."""
    if scheme == "github":
        verify_github(secret, headers.get(GITHUB_HEADER), body)
    else:
        msg_id, timestamp, signatures = (headers.get(name) for name in STANDARD_WEBHOOKS_HEADERS)
        verify_standard_webhooks(secret, msg_id, timestamp, signatures, body, now)


def standard_webhooks_key(secret: bytes) -> bytes:
    """The HMAC key: the base64-decoded part of ``whsec_<base64>``, or a secret without the prefix as is."""
    if not secret.startswith(WHSEC_PREFIX.encode()):
        return secret
    try:
        return base64.b64decode(secret[len(WHSEC_PREFIX) :], validate=True)
    except binascii.Error:
        raise SignatureSecretUnavailable(
            "The receiver's signature secret starts with whsec_ but is not valid base64."
        ) from None


def _utf8(header: str) -> bytes:
    """A header's bytes as sent (aiohttp keeps undecodable bytes as surrogates)."""
    return header.encode("utf-8", "surrogateescape")


def _b64(value: str) -> bytes:
    """The decoded signature, or b"" (which matches nothing) when it isn't base64."""
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return b""


class SignatureSecrets:
    """Finds receivers' shared secrets. ``kube`` is None in standalone mode, where secretRef can't work."""

    def __init__(
        self,
        kube: KubeClient | None = None,
        *,
        cache_seconds: float = SECRET_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._files: dict[Path, tuple[int, bytes]] = {}  # path -> (mtime_ns, secret)
        self._secrets: dict[tuple[str, str], tuple[float, bytes]] = {}  # (ns, name) -> (read at, secret)

    async def secret(self, receiver: Receiver) -> bytes:
        spec = receiver.signature
        if spec is None:
            raise ValueError(f"receiver {receiver.key} has no spec.signature")
        if "secretFile" in spec:
            return self._from_file(Path(spec["secretFile"]), receiver)
        return await self._from_secret(spec["secretRef"]["name"], receiver)

    def _from_file(self, path: Path, receiver: Receiver) -> bytes:
        try:
            mtime = path.stat().st_mtime_ns
            cached = self._files.get(path)
            if cached is not None and cached[0] == mtime:
                return cached[1]
            secret = path.read_bytes().strip()
        except OSError as e:
            logger.error("cannot read the signature secret of %s from %s: %s", receiver.key, path, e)
            raise SignatureSecretUnavailable(UNREADABLE) from e
        if not secret:
            logger.error("the signature secret file %s of %s is empty", path, receiver.key)
            raise SignatureSecretUnavailable("The receiver's signature secret is empty.")
        self._files[path] = (mtime, secret)
        return secret

    async def _from_secret(self, name: str, receiver: Receiver) -> bytes:
        if self._kube is None:
            raise SignatureInvalid(
                "The receiver's spec.signature.secretRef works only in operator mode; "
                "standalone receivers use secretFile."
            )
        key = (receiver.namespace, name)
        cached = self._secrets.get(key)
        now = self._clock()
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        where = f"{receiver.namespace}/{name}"
        try:
            obj = await self._kube.get(SECRETS.named(name, receiver.namespace))
        except KubeNotFound as e:
            logger.error("the signature Secret %s of %s does not exist", where, receiver.key)
            raise SignatureSecretUnavailable(f"The signature Secret {where} does not exist.") from e
        except KubeError as e:
            logger.error("cannot read the signature Secret %s of %s: %s", where, receiver.key, e)
            raise SignatureSecretUnavailable(UNREADABLE) from e
        encoded = (obj.get("data") or {}).get(SECRET_KEY, "")
        try:
            secret = base64.b64decode(encoded, validate=True).strip()
        except binascii.Error:
            secret = b""
        if not secret:
            logger.error("the signature Secret %s of %s has no key %r", where, receiver.key, SECRET_KEY)
            raise SignatureSecretUnavailable(f"The signature Secret {where} has no key '{SECRET_KEY}'.")
        self._secrets[key] = (now, secret)
        return secret
