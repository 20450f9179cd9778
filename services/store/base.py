"""The storage interface every back end implements (SQLite embedded, PostgreSQL in production).

Correctness never depends on Redis or on process memory: whatever must survive a restart or be
shared by replicas goes through here, and each method is one transaction.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime

from services.store.records import EntityChanges, EntityRecord, EntityUid, SigningKey


class StoreUnavailable(Exception):
    """The back end cannot be reached; callers answer 503 and retry later."""


class Store(abc.ABC):
    dialect: str

    @abc.abstractmethod
    async def open(self, *, migrate: bool = True) -> None:
        """Connect (and apply pending migrations unless `migrate` is false)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable unless a trivial query succeeds (readiness)."""

    @abc.abstractmethod
    async def migrate(self) -> list[str]:
        """Apply pending versioned migrations; return the versions applied now (in order).

        Safe to run concurrently from several processes: exactly one applies each version.
        """

    @abc.abstractmethod
    async def applied_migrations(self) -> list[str]: ...

    # -- entities (the policy information point) ------------------------------------------

    @abc.abstractmethod
    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        """Insert or replace entities atomically; return the new entity revision.

        Revisions are totally ordered in commit order (writers serialise on one counter row), so
        `entity_changes(since)` never skips a committed change.
        """

    @abc.abstractmethod
    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        """Delete entities atomically (kept as tombstones for sync); return the new revision.
        Deleting an unknown uid is not an error."""

    @abc.abstractmethod
    async def entity_changes(self, since_revision: int) -> EntityChanges:
        """Entities upserted and deleted after `since_revision`, and the revision now.
        `since_revision=0` returns every live entity and no deletions."""

    @abc.abstractmethod
    async def entity_revision(self) -> int:
        """The current entity revision (cheap: instances poll it)."""

    # -- secrets and keys -------------------------------------------------------------------

    @abc.abstractmethod
    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        """Return the secret stored under `name`, storing `candidate` first if there is none.
        Under concurrency every caller gets the same value (the first writer wins)."""

    @abc.abstractmethod
    async def add_signing_key(self, key: SigningKey) -> None: ...

    @abc.abstractmethod
    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        """Keys not retired at `now`, newest first."""

    @abc.abstractmethod
    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        """Set `retires_at` on every key older than `before_kid` that has none."""
