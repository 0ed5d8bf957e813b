"""Durable state: the ``Store`` interface and its implementations.

- ``base``         the interface (``Store``, ``IntentStore``) and its records and errors
- ``outcome``      the one rule that decides a hit's outcome, over a history each store answers
- ``ids``          hit ids and the idempotency window, the same in both modes
- ``rate_bucket``  the rate limit as a token bucket, and the buckets one process keeps in memory
- ``sqlite``       standalone mode's ``SqliteStore``, built from ``sqlite_schema`` (schema and
  migrations), ``sqlite_groupcommit`` (batches, COMMIT on a thread, file identity, write probe),
  ``sqlite_queries`` (the SQL of each operation), ``sqlite_prune`` (retention) and
  ``sqlite_snapshot`` (the CLI's read-only view)
- ``kube``         operator mode's ``KubeStore``: one IntentLedger object per target, whose pure
  functions are ``ledger``
"""

from controller.store.base import (
    FoldStep,
    HitRecord,
    HitRequest,
    HitResult,
    PendingIntent,
    Store,
    StoredToken,
    StoreError,
    StoreUnavailable,
    TargetState,
)

__all__ = [
    "FoldStep",
    "HitRecord",
    "HitRequest",
    "HitResult",
    "PendingIntent",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredToken",
    "TargetState",
]
