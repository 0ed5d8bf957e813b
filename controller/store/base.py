"""The store interface: everything that must survive a restart, behind one Protocol.

Standalone mode implements all of ``Store`` with SQLite (``controller.store.sqlite``). The
Kubernetes mode implements ``IntentStore`` — the part the listener and the reconciler use — with
``IntentLedger`` objects (``controller.store.kube``); there, tokens live in Secrets and problems in
each Receiver's status, so it has no use for the rest.

Design points every implementation keeps:

- ``record_hit`` is the only write on the hot path. It decides the hit's outcome (idempotency key
  repeat, Alertmanager retry, cooldown, rate limit) with the one rule of ``controller.store.outcome``
  *in the same transaction* that records it, so two concurrent hits can never both pass a check
  that only one should pass. It returns only after the
  hit is durable: the listener answers 200 on its return.
- Intents are folded in arrival order (``PendingIntent.seq``). ``commit_fold`` records the new
  absolute desired value and marks the folded intents in one transaction, so a crash after it
  repeats an idempotent "set to N", never a step.
- A store that several processes write (the Kubernetes one) fences the fold: ``commit_fold`` succeeds
  only if the target is still as the ``pending_intents`` that read its steps left it, and raises
  ``FoldConflict`` otherwise, so a fold computed from a stale read (a deposed leader's, late) never
  lands. The store keeps that read itself, per target, so the interface is the same for every store;
  a single-process store (SQLite) has nothing to fence against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from controller.errors import WebhookServiceError
from controller.model import Disposition, Outcome, Problem, RateLimit

IntentState = Literal["pending", "folded", "failed"]


class StoreError(WebhookServiceError):
    """Base of the store's errors. All are retried: the next attempt reads the store again (a lock
    released, a disk freed, the API server back, the intents still pending folded anew)."""

    retryable = True


class StoreUnavailable(StoreError):
    """The store cannot record or read right now (disk full, locked, closed). The listener answers 503."""


class LedgerFull(StoreUnavailable):
    """The target's ledger holds as much as it may (pending intents or encoded size); the hit is not
    recorded. It makes room as the target's pending intents are folded, so the sender retries later:
    the listener answers 503 with ``retry_after`` (Alertmanager retries a 5xx)."""

    retry_after = 30.0


class FoldConflict(StoreError):
    """The target changed since the fold read it (another writer, or a desired value not yet confirmed).

    Retryable: the reconciler's next attempt reads the target again and folds from the fresh state.
    """


class HitRateLimited(StoreError):
    """The receiver's rate limit is exhausted; the hit is not recorded.

    Every store counts it, in the rule that decides a hit's outcome (``controller.store.outcome``):
    SQLite in memory, the ledger across all replicas. The listener answers 429 with ``retry_after``.
    """

    retry_after: float

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"rate limit reached; retry after {retry_after:.1f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class HitRequest:
    """A verified hit, with the receiver's settings that decide its outcome."""

    receiver: str  # "namespace/name"
    receiver_uid: str
    target_id: str
    disposition: Disposition  # decided by the listener from the body and the receiver's spec
    reason: str | None  # why a hit is ignored or suspended
    intent: dict[str, Any] | None  # the driver's intent (JSON object); set when disposition is "act"
    idempotency_key: str | None  # Idempotency-Key or webhook-id header; a repeat within 24 h is a duplicate
    dedupe_key: str | None  # Alertmanager notification identity; a repeat within dedupe_window is a duplicate
    dedupe_window: float  # seconds
    cooldown: float  # seconds between two accepted hits of this receiver
    received_at: float  # epoch seconds
    rate_limit: RateLimit | None = None  # enforced by every store (HitRateLimited)


@dataclass(frozen=True)
class HitResult:
    hit_id: str
    outcome: Outcome


@dataclass(frozen=True)
class PendingIntent:
    seq: int  # arrival order, increasing across all targets
    hit_id: str
    receiver: str
    intent: dict[str, Any]


@dataclass(frozen=True)
class FoldStep:
    """What folding one intent did: recorded on its hit for ``status`` and the logs."""

    seq: int
    hit_id: str
    before: int
    after: int
    clamped: bool


TargetPhase = Literal["new", "pending", "converged", "error"]


@dataclass(frozen=True)
class TargetState:
    """A target as the store knows it.

    ``converged`` is true only once a desired value was applied and confirmed on the target: a new
    target is not converged, and neither is one whose last attempt failed (``last_error``). When the
    target refused its intents for good (``fail_intents``) the desired value is withdrawn
    (``desired`` None), so there is nothing left to confirm and the reconciler does not retry it;
    the target stays at ``observed`` with the error until the next accepted hit.
    """

    target_id: str
    desired: int | None  # last folded absolute value; None before the first fold or after a refusal
    observed: int | None  # last value read from the target
    converged: bool  # the target was confirmed at ``desired``
    last_error: str | None
    updated_at: float

    @property
    def state(self) -> TargetPhase:
        """What a view says of the target: "error" (the last attempt failed: ``last_error``), "new"
        (no desired value was ever applied), "pending" (a desired value not yet confirmed) or
        "converged" (confirmed at ``desired``)."""
        if self.last_error is not None:
            return "error"
        if self.desired is None:
            return "new"
        return "converged" if self.converged else "pending"


@dataclass(frozen=True)
class StoredToken:
    """A receiver's current token. Kept so trigger URLs survive restarts.

    ``token`` is the token's digest (``controller.tokens.token_digest``): the token itself is signed
    again from these claims when needed (``restore_token``), so the store holds no usable secret.

    ``source`` and ``spec`` are the receiver's last good declaration (its file, and its defaulted
    spec as JSON): when that file is unreadable at a restart, the receiver is rebuilt from them
    instead of being taken for deleted, so its URL keeps working.
    """

    namespace: str
    name: str
    uid: str
    jti: str
    kid: str
    token: str
    driver: str
    target_id: str
    token_generation: str
    issued_at: float
    source: str = ""
    spec: str = ""

    @property
    def receiver(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class HitRecord:
    """A hit as ``status`` shows it."""

    hit_id: str
    receiver: str
    outcome: Outcome
    received_at: float
    reason: str | None
    intent_state: IntentState | None  # None for hits that carry no intent
    before: int | None
    after: int | None
    clamped: bool | None
    target_id: str = ""  # set by ``read_status``'s recent hits (the chart marks them on their target)


@dataclass(frozen=True)
class TargetPoint:
    """One change of a target's state (a fold, a confirmation, an error): a point of its chart."""

    at: float  # epoch seconds
    desired: int | None
    observed: int | None
    converged: bool
    error: str | None


@dataclass(frozen=True)
class StoreStatus:
    """What the store knows for the status views (the status page, ``status``), read at once.

    ``history`` and ``recent_hits`` are bounded by the store's retention (SQLite) or the ledger's
    caps (Kubernetes); a view draws each target's chart from ``history`` and marks ``recent_hits``
    on it.
    """

    targets: list[TargetState]
    pending: dict[str, int]  # pending intents per target id (targets without any are absent)
    last_hits: dict[str, HitRecord]  # the latest hit of every receiver, keyed "namespace/name"
    recent_hits: list[HitRecord]  # newest first, at most RECENT_HITS, each with its target_id
    history: dict[str, list[TargetPoint]]  # per target id, oldest first
    # the newest accepted intent of each target (its JSON), so a view can say what a target that is
    # not a scale is doing (serviceUpgrade: the image being rolled out)
    latest_intents: dict[str, dict[str, Any]]


RECENT_HITS = 200  # hits ``read_status`` returns at most

# The ``Store`` meta key where ``run`` keeps why Cattle can't be used ("" when it can), for ``status``.
CATTLE_PROBLEM_META = "cattle_problem"


class IntentStore(Protocol):
    """Hits, intents and targets: what the listener and the reconciler need."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def is_open(self) -> bool: ...

    def unavailable_reason(self) -> str | None:
        """None while the store can record hits; otherwise why not, for /readyz."""

    async def record_hit(self, request: HitRequest) -> HitResult: ...

    async def targets_with_work(self) -> list[str]:
        """Targets with pending intents, or whose desired value is not yet confirmed."""
        ...

    async def pending_intents(self, target_id: str) -> list[PendingIntent]:
        """Pending intents of the target in arrival order."""
        ...

    async def commit_fold(self, target_id: str, desired: int, steps: Sequence[FoldStep]) -> None:
        """Record ``desired`` (not yet converged) and mark the steps' intents folded, atomically.

        May raise ``FoldConflict`` when the target changed since ``pending_intents`` read it.
        """
        ...

    async def fail_intents(self, target_id: str, reason: str) -> int:
        """Mark every pending intent of the target failed; the target keeps its observed value, with the
        error, not converged, and its desired value withdrawn (it will never be applied)."""
        ...

    async def get_target(self, target_id: str) -> TargetState | None: ...

    async def set_observed(
        self, target_id: str, observed: int | None, *, converged: bool, error: str | None
    ) -> None: ...

    # -- status
    async def read_status(self) -> StoreStatus:
        """Targets, pending counts, hits and each target's history, for the status views."""
        ...


class Store(IntentStore, Protocol):
    """Everything standalone mode keeps: intents, plus tokens, manifest problems and metadata."""

    # -- receivers' tokens
    async def get_token(self, namespace: str, name: str) -> StoredToken | None: ...

    async def put_tokens(self, tokens: Sequence[StoredToken]) -> None:
        """Store every record in one transaction."""
        ...

    async def delete_token(self, namespace: str, name: str) -> None: ...

    async def list_tokens(self) -> list[StoredToken]: ...

    async def set_problems(self, problems: Sequence[Problem]) -> None:
        """Replace the recorded manifest problems (shown by ``status``)."""
        ...

    async def list_problems(self) -> list[Problem]: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def get_meta(self, key: str) -> str | None: ...
