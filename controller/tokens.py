"""Trigger tokens: JWTs signed with Ed25519 keys kept in the state directory.

Why JWTs and not random strings: a token names its receiver and target, so the listener can verify
it without a database read (a bounded cache makes repeat hits cheap), and Rancher users know the
shape. Why that is still safe to revoke: a valid signature is necessary, not sufficient —
``check_current`` compares the claims with the receiver's *current* token (``jti``) in the
in-memory receiver_set on every hit, so removing or re-minting a receiver rejects its old token at once.

Why the store keeps a digest, not the token: Ed25519 signatures are deterministic, so a token is
fully determined by its claims and the key that signed it. The store keeps the claims and
``token_digest`` of the token; ``restore_token`` signs the same claims again with the same key and
the digest proves it is the very token handed out. A copy of the database alone therefore holds no
usable URL; whoever can read the keys could mint any token anyway.

Rancher's own credentials (``controller.rancher.keys``) are checked here too, and then stand for the
receiver's current token: ``rancher_credential`` says whether a token is one (a key, which is never a
JWT, or an RS256 token Cattle signed, when its public key was given), and ``check_rancher`` finds the
imported receiver it opens in the receiver set, comparing digests in constant time. What it returns are
the claims of the receiver's current token, so every later check treats the hit like any other. A
Rancher key that opens nothing is refused exactly like any other string that is not a token.

Keys: one PEM file per key in ``<state>/keys`` (0600). File names start with a UTC timestamp, so
sorting by name sorts by age; the newest signs, all verify. Rotation is "add a key, re-mint,
remove the old key" (see the README).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from controller.errors import WebhookServiceError
from controller.model import ActiveReceiver, Receiver, Target, TokenClaims
from controller.rancher.keys import LEGACY_ALGORITHM, key_digest
from controller.store.base import StoredToken

ALGORITHM = "EdDSA"
ISSUER = "webhook-service"
KEY_SUFFIX = ".pem"
KEYS_DIR = "keys"  # the key files' folder inside a state folder
DIGEST_PREFIX = "sha256:"
REQUIRED_CLAIMS = ("ns", "name", "uid", "jti", "driver", "target", "iat")


class TokenError(WebhookServiceError):
    """Base of the token errors. ``code`` is machine-readable; the message never holds the token."""

    code = "token_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TokenInvalid(TokenError):
    """The request does not prove anything (401)."""


class TokenMissing(TokenInvalid):
    code = "token_missing"


class TokenMalformed(TokenInvalid):
    code = "token_malformed"


class UnknownKey(TokenInvalid):
    code = "unknown_key"


class BadAlgorithm(TokenInvalid):
    code = "bad_algorithm"


class BadSignature(TokenInvalid):
    code = "bad_signature"


class TokenRejected(TokenError):
    """A genuine token that no longer grants anything (403)."""


class TokenRevoked(TokenRejected):
    code = "token_revoked"


class TokenSuperseded(TokenRejected):
    code = "token_superseded"


class ProjectMismatch(TokenRejected):
    code = "project_mismatch"


class KeyRing:
    """The signing keys found in one folder, newest last."""

    def __init__(self, keys: Mapping[str, Ed25519PrivateKey]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._keys = dict(sorted(keys.items()))
        self._public = {kid: key.public_key() for kid, key in self._keys.items()}

    @classmethod
    def load_or_create(cls, keys_dir: Path, *, clock: Callable[[], float] = time.time) -> KeyRing:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not any(keys_dir.glob(f"*{KEY_SUFFIX}")):
            cls.create_key(keys_dir, clock=clock)
        return cls.load(keys_dir)

    @classmethod
    def load(cls, keys_dir: Path) -> KeyRing:
        return cls.from_pems(
            {path.name: path.read_bytes() for path in sorted(keys_dir.glob(f"*{KEY_SUFFIX}"))}
        )

    @classmethod
    def from_pems(cls, pems: Mapping[str, bytes]) -> KeyRing:
        """Keys from ``{"<kid>.pem": PEM}`` (a folder's files, or a Secret's data)."""
        keys: dict[str, Ed25519PrivateKey] = {}
        for name, pem in pems.items():
            if not name.endswith(KEY_SUFFIX):
                continue
            key = serialization.load_pem_private_key(pem, password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"{name} is not an Ed25519 private key")
            keys[name.removesuffix(KEY_SUFFIX)] = key
        return cls(keys)

    @staticmethod
    def new_key(*, clock: Callable[[], float] = time.time) -> tuple[str, bytes]:
        """A new key: (file name "<kid>.pem", PEM). Kids sort by creation time, so the newest signs."""
        # Microseconds: two keys made in one second (a rotation right after the first start) must still
        # sort by age, since the newest kid signs.
        stamp = datetime.fromtimestamp(clock(), tz=UTC).strftime("%Y%m%dT%H%M%S%fZ")
        kid = f"{stamp}-{secrets.token_hex(4)}"
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return f"{kid}{KEY_SUFFIX}", pem

    @staticmethod
    def create_key(keys_dir: Path, *, clock: Callable[[], float] = time.time) -> str:
        """Write a new key file (0600) and return its kid. The newest key signs from the next load on."""
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        name, pem = KeyRing.new_key(clock=clock)
        kid = name.removesuffix(KEY_SUFFIX)
        path = keys_dir / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        return kid

    @property
    def newest_kid(self) -> str:
        return next(reversed(self._keys))

    @property
    def kids(self) -> list[str]:
        return list(self._keys)

    def public_key(self, kid: str) -> Ed25519PublicKey | None:
        return self._public.get(kid)

    def sign(self, payload: Mapping[str, Any], kid: str | None = None) -> tuple[str, str]:
        """Sign with the newest key, or with ``kid`` (to restore a token it signed)."""
        kid = kid or self.newest_kid
        token = jwt.encode(
            dict(payload), self._keys[kid], algorithm=ALGORITHM, headers={"kid": kid, "typ": "JWT"}
        )
        return token, kid


def mint_token(keyring: KeyRing, *, receiver: Receiver, uid: str, jti: str, now: float) -> tuple[str, str]:
    """A new token for the receiver: (token, kid)."""
    return keyring.sign(
        _payload(receiver.namespace, receiver.name, uid, jti, int(now), receiver.driver, receiver.target)
    )


def restore_token(keyring: KeyRing, record: StoredToken, target: Target) -> str | None:
    """The token minted earlier from the record's claims, signed again with the same key; None when
    that key is gone or the result is not the token the record's digest names."""
    if record.kid not in keyring.kids:
        return None
    payload = _payload(
        record.namespace, record.name, record.uid, record.jti, int(record.issued_at), record.driver, target
    )
    token, _ = keyring.sign(payload, record.kid)
    return token if matches_stored(token, record.token) else None


def token_digest(token: str) -> str:
    """What the store keeps of a token: enough to check a restored one, useless as a credential."""
    return DIGEST_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def matches_stored(token: str, stored: str) -> bool:
    """Whether ``token`` is the one stored (as a digest, or in plain text by an older version)."""
    if stored.startswith(DIGEST_PREFIX):
        return hmac.compare_digest(token_digest(token), stored)
    return hmac.compare_digest(token, stored)


def _payload(
    namespace: str, name: str, uid: str, jti: str, iat: int, driver: str, target: Target
) -> dict[str, Any]:
    # Key order is part of the token's bytes: restore_token must build exactly this dict.
    return {
        "iss": ISSUER,
        "sub": f"{namespace}/{name}",
        "ns": namespace,
        "name": name,
        "uid": uid,
        "jti": jti,
        "iat": iat,
        "driver": driver,
        "target": dict(target.claims),
    }


@dataclass(frozen=True)
class RancherCredential:
    """What a Rancher trigger URL names: the digest of its key (or of a legacy token's ``uuid``, which
    was that receiver's key) and the project it was issued in (None: the URL names none)."""

    digest: str
    project_id: str | None


class TokenVerifier:
    """Checks signatures, with a bounded LRU cache of tokens already verified.

    The cache holds only "this signature is good"; whether the token still grants anything is
    ``check_current``'s job on every hit, so a cached entry never outlives a revocation.
    ``rancher_public_key``: Cattle's key, to accept the RS256 tokens of Rancher's oldest URLs.
    """

    def __init__(
        self, keyring: KeyRing, *, cache_size: int = 4096, rancher_public_key: RSAPublicKey | None = None
    ) -> None:
        self._keyring = keyring
        self._cache: OrderedDict[str, TokenClaims] = OrderedDict()
        self._cache_size = cache_size
        self._rancher_public_key = rancher_public_key

    def rancher_credential(self, token: str, url_project: str | None) -> RancherCredential | None:
        """The Rancher credential ``token`` is, or None when it is for ``verify`` (ours, or nothing).

        Every token this service mints is a JWT, so anything else may be a Rancher key; an RS256 JWT
        is Rancher's only when Cattle's public key was given (else ``verify`` refuses its algorithm)."""
        if token and token.count(".") != 2:
            return RancherCredential(key_digest(token), url_project)
        public_key = self._rancher_public_key
        if not token or public_key is None:
            return None
        try:
            if jwt.get_unverified_header(token).get("alg") != LEGACY_ALGORITHM:
                return None
        except jwt.PyJWTError:
            return None
        return _verify_rancher(token, public_key, url_project)

    def verify(self, token: str) -> TokenClaims:
        cached = self._cache.get(token)
        if cached is not None:
            self._cache.move_to_end(token)
            return cached
        claims = self._verify(token)
        self._cache[token] = claims
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return claims

    def cache_len(self) -> int:
        return len(self._cache)

    def use(self, keyring: KeyRing) -> None:
        """Verify with another key ring from now on (keys rotated); forget what the old one verified."""
        self._keyring = keyring
        self._cache.clear()

    def _verify(self, token: str) -> TokenClaims:
        if not token:
            raise TokenMissing("no token was given")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenMalformed("the token is not a well-formed JWT") from e
        if header.get("alg") != ALGORITHM:
            raise BadAlgorithm(f"tokens must be signed with {ALGORITHM}; this one says {header.get('alg')!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenMalformed("the token has no key id (kid)")
        key = self._keyring.public_key(kid)
        if key is None:
            raise UnknownKey("the token was signed with a key this service does not have")
        try:
            payload = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": False},
                issuer=ISSUER,
            )
        except jwt.InvalidSignatureError as e:
            raise BadSignature("the token's signature does not verify") from e
        except jwt.PyJWTError as e:
            raise TokenMalformed(f"the token's claims are not valid: {e}") from e
        return claims_from_payload(payload, kid)


def _verify_rancher(token: str, public_key: RSAPublicKey, url_project: str | None) -> RancherCredential:
    try:
        payload = jwt.decode(
            token, public_key, algorithms=[LEGACY_ALGORITHM], options={"require": ["uuid", "projectId"]}
        )
    except jwt.InvalidSignatureError as e:
        raise BadSignature("the token's signature does not verify") from e
    except jwt.PyJWTError as e:
        raise TokenMalformed(f"the token's claims are not valid: {e}") from e
    uuid, project_id = payload["uuid"], payload["projectId"]
    if not (isinstance(uuid, str) and uuid and isinstance(project_id, str)):
        raise TokenMalformed("the token's claims have the wrong types")
    if url_project is not None and url_project != project_id:
        raise ProjectMismatch("the projectId in the URL does not match the token's project")
    return RancherCredential(key_digest(uuid), project_id)


def claims_from_payload(payload: Mapping[str, Any], kid: str) -> TokenClaims:
    target = payload["target"]
    text_fields = (payload["ns"], payload["name"], payload["uid"], payload["jti"], payload["driver"])
    if not (
        all(isinstance(v, str) for v in text_fields)
        and isinstance(target, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in target.items())
        and isinstance(payload["iat"], int)
    ):
        raise TokenMalformed("the token's claims have the wrong types")
    return TokenClaims(
        namespace=payload["ns"],
        name=payload["name"],
        uid=payload["uid"],
        jti=payload["jti"],
        driver=payload["driver"],
        target=dict(target),
        iat=payload["iat"],
        kid=kid,
    )


def check_current(
    claims: TokenClaims, active: ActiveReceiver | None, project_id: str | None
) -> ActiveReceiver:
    """The receiver the token grants, unless it isn't its current token or the projectId differs."""
    if active is None or active.uid != claims.uid:
        raise TokenRevoked(
            f"the token of receiver {claims.receiver_key} was revoked: the receiver no longer exists"
        )
    receiver = active.receiver
    if (
        active.jti != claims.jti
        or receiver.driver != claims.driver
        or receiver.target.claims != claims.target
    ):
        raise TokenSuperseded(
            f"the token of receiver {claims.receiver_key} was superseded by a newer one; "
            "use the receiver's current trigger URL"
        )
    if project_id is not None and project_id != claims.target.get("projectId"):
        raise ProjectMismatch("the projectId in the URL does not match the token's project")
    return active


def check_rancher(credential: RancherCredential, active: ActiveReceiver | None) -> TokenClaims:
    """The claims of the current token of the imported receiver ``credential`` opens (``active``, found
    by its digest), unless its receiver was given a new token generation or the project differs."""
    digest = active.receiver.rancher_key_sha256 if active is not None else None
    if active is None or digest is None or not hmac.compare_digest(digest, credential.digest):
        raise TokenMalformed("the token is not a well-formed JWT")  # what any other stranger gets
    receiver = active.receiver
    if receiver.token_generation:
        raise TokenSuperseded(
            f"the Rancher URL of receiver {receiver.key} was replaced by a new token generation; "
            "use the receiver's current trigger URL"
        )
    if credential.project_id is None or credential.project_id != receiver.target.project_id:
        raise ProjectMismatch("a Rancher URL is valid only with the projectId of its receiver")
    return TokenClaims(
        namespace=receiver.namespace,
        name=receiver.name,
        uid=active.uid,
        jti=active.jti,
        driver=receiver.driver,
        target=dict(receiver.target.claims),
        iat=0,
        kid=active.kid,
    )


ENDPOINT_PATH = "/v1-webhooks/endpoint"


def trigger_url(base_url: str, token: str, project_id: str | None) -> str:
    """Rancher's trigger URL shape: ``{base}/v1-webhooks/endpoint?key=<token>&projectId=<projectId>``."""
    query = {"key": token} if project_id is None else {"key": token, "projectId": project_id}
    return f"{base_url.rstrip('/')}{ENDPOINT_PATH}?{urlencode(query)}"
