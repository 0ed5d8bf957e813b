"""The product's values: receivers, targets, intents, hits. Frozen, so they can be shared freely.

A receiver is what a person declares; its *target* is what it acts on (for scaleService a Cattle
service, identified by ``scaleService:1a5/1s7``). Targets, not receivers, are the unit of
serialisation in the reconciler: an up/down pair of receivers on one service shares one target, so
their intents fold in one order.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.manifest import ReceiverSpec, SignatureSpec

Outcome = Literal["accepted", "ignored", "duplicate", "cooldown", "suspended"]
Disposition = Literal["act", "ignored", "suspended"]

TOKEN_GENERATION_ANNOTATION = "webhook-service.dev/token-generation"
API_VERSION = "webhook-service.dev/v1"
KIND = "Receiver"
DEFAULT_NAMESPACE = "default"


MAX_PROBLEM_CHARS = 300  # a problem is a line in a log, a row in the store and in ``status``
_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxdict, _SHOWN.maxlist = 2, 4, 4
_SHOWN.maxstring = _SHOWN.maxother = _SHOWN.maxlong = 40


def shown(value: Any) -> str:
    """A short rendering of a value from a manifest, for a message: never the whole of a huge value
    (``repr`` of an alias-expanded structure once wrote a 312 MB log line)."""
    return _SHOWN.repr(value)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where (file, document, field path) and what.

    The path and message are cut to ``MAX_PROBLEM_CHARS`` here, once for every producer, because
    both may quote what a hostile file contains.
    """

    path: str  # field path like "spec.scaleServiceConfig.max"; "" for the whole document
    message: str
    file: str = ""
    document: int | None = None  # 0-based index of the YAML document in its file

    def __post_init__(self) -> None:
        for name in ("path", "message"):
            text = getattr(self, name)
            if len(text) > MAX_PROBLEM_CHARS:
                object.__setattr__(self, name, text[: MAX_PROBLEM_CHARS - 3] + "...")

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.document is not None:
            where += f"[{self.document}]"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class Target:
    """What a receiver acts on. ``id`` is unique across drivers and names the reconcile unit."""

    driver: str
    key: str  # unique within the driver, e.g. "1a5/1s7"
    project_id: str | None
    claims: Mapping[str, str]  # the target as written into the token: {"projectId": ..., "serviceId": ...}

    @property
    def id(self) -> str:
        return f"{self.driver}:{self.key}"


@dataclass(frozen=True)
class ScaleIntent:
    """One accepted hit's step, with the bounds of the receiver at the moment it was accepted."""

    action: Literal["up", "down"]
    amount: int
    min: int
    max: int

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "amount": self.amount, "min": self.min, "max": self.max}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleIntent:
        return cls(
            action=data["action"], amount=int(data["amount"]), min=int(data["min"]), max=int(data["max"])
        )


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float


@dataclass(frozen=True)
class Receiver:
    """A checked receiver manifest. ``spec`` keeps the raw (schema-valid) spec for the driver."""

    namespace: str
    name: str
    driver: str
    spec: ReceiverSpec = field(compare=False, hash=False)
    target: Target
    token_generation: str = ""
    uid: str | None = None  # set by Kubernetes; the standalone store assigns one on first sight
    fire_on: frozenset[str] = frozenset({"firing"})
    cooldown_seconds: float = 0.0
    dedupe_window_seconds: float = 60.0
    rate_limit: RateLimit | None = None
    suspend: bool = False
    # The sender must also sign its hits (checked right after the token, before anything else).
    signature: SignatureSpec | None = field(default=None, hash=False)
    source: str = ""  # the file (or "kubernetes") it came from, for messages
    # The hex SHA-256 of the key of the receiver's Rancher trigger URL, when it was imported from Rancher.
    rancher_key_sha256: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def spec_fingerprint(self) -> str:
        """A stable text of the spec, to tell an edit from a no-op."""
        return json.dumps(self.spec, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class ActiveReceiver:
    """A receiver together with its current token: what the listener checks a hit against."""

    receiver: Receiver
    uid: str
    jti: str
    token: str
    kid: str
    refusal: str | None = None  # why hits are refused although the token is good (e.g. an HPA conflict)

    @property
    def key(self) -> str:
        return self.receiver.key


@dataclass(frozen=True)
class TokenClaims:
    """The verified payload of a trigger token."""

    namespace: str
    name: str
    uid: str
    jti: str
    driver: str
    target: Mapping[str, str]
    iat: int
    kid: str

    @property
    def receiver_key(self) -> str:
        return f"{self.namespace}/{self.name}"
