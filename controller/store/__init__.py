"""Durable state: the ``Store`` interface and its implementations (SQLite for standalone mode)."""

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
