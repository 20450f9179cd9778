"""Durable state: the `Store` interface, its records, and `create_store` to pick a back end."""

from __future__ import annotations

from services.store.base import Store, StoreUnavailable
from services.store.records import (
    ApprovalRecord,
    AuditDraft,
    AuditEvent,
    CallbackDelivery,
    ContinuationHandle,
    EntityChanges,
    EntityRecord,
    EntityUid,
    EvaluationRecord,
    HandleCreation,
    IdempotencyClaim,
    IdempotentTask,
    IssuedGrant,
    SigningKey,
    TaskCreation,
    TaskItem,
    TaskRecord,
)

__all__ = [
    "ApprovalRecord",
    "AuditDraft",
    "AuditEvent",
    "CallbackDelivery",
    "ContinuationHandle",
    "EntityChanges",
    "EntityRecord",
    "EntityUid",
    "EvaluationRecord",
    "HandleCreation",
    "IdempotencyClaim",
    "IdempotentTask",
    "IssuedGrant",
    "SigningKey",
    "Store",
    "StoreUnavailable",
    "TaskCreation",
    "TaskItem",
    "TaskRecord",
    "create_store",
]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def create_store(url: str, *, pool_min: int = 1, pool_max: int = 10) -> Store:
    """The store for `url`, not yet opened.

    `sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the pool sizes do not apply:
    SQLite keeps one connection per process), or a `postgresql://` / `postgres://` DSN as asyncpg
    reads it (query parameters it does not know become server settings, e.g. `?search_path=s`).
    """
    # Each back end is imported only when used: a worker on SQLite never loads asyncpg.
    if url.startswith(_SQLITE_PREFIX) and len(url) > len(_SQLITE_PREFIX):
        from services.store.sqlite import SQLiteStore

        return SQLiteStore(url.removeprefix(_SQLITE_PREFIX))
    if url.startswith(_POSTGRES_SCHEMES):
        from services.store.postgres import PostgresStore

        return PostgresStore(url, pool_min=pool_min, pool_max=pool_max)
    # Name the scheme only: the rest of a URL may hold a password.
    scheme = url.partition(":")[0]
    raise ValueError(
        f"unsupported or malformed store URL (scheme {scheme!r}): expected sqlite:///relative/path.db,"
        " sqlite:////absolute/path.db, postgresql://... or postgres://..."
    )
