"""The production store: PostgreSQL through an asyncpg connection pool, shared by replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Literal

import asyncpg

from services.store.base import Store, StoreUnavailable
from services.store.codec import EMPTY_PARENTS, EMPTY_PROPERTIES, as_utc, decode_changes, encode_entity
from services.store.migrations import pending_migrations
from services.store.records import EntityChanges, EntityRecord, EntityUid, SigningKey

# Errors meaning the server cannot be reached or is going away (restart, failover, full), as
# opposed to a faulty query: callers answer 503 and retry.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes ConnectionRefusedError
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

_Isolation = Literal["read_committed", "repeatable_read"]

# Any fixed key works: it only has to be the same for every replica migrating this database.
_MIGRATION_LOCK_KEY = 0x41524F50  # "AROP"


@contextmanager
def _unavailable_on_connection_error() -> Iterator[None]:
    try:
        yield
    except _CONNECTION_ERRORS as error:
        raise StoreUnavailable(f"PostgreSQL unavailable: {error!r}") from error


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str, *, pool_min: int = 1, pool_max: int = 10) -> None:
        self._dsn = dsn
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._pool: asyncpg.Pool | None = None

    async def open(self, *, migrate: bool = True) -> None:
        with _unavailable_on_connection_error():
            self._pool = await asyncpg.create_pool(
                self._dsn, min_size=self._pool_min, max_size=self._pool_max
            )
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            raise RuntimeError("PostgresStore used before open()")
        with _unavailable_on_connection_error():
            async with self._pool.acquire() as connection:
                yield connection

    @asynccontextmanager
    async def _transaction(self, isolation: _Isolation = "read_committed") -> AsyncIterator[asyncpg.Connection]:
        async with self._connection() as connection, connection.transaction(isolation=isolation):
            yield connection

    async def ping(self) -> None:
        async with self._connection() as connection:
            await connection.fetchval("SELECT 1")

    async def migrate(self) -> list[str]:
        async with self._transaction() as connection:
            # Held until commit: a concurrent replica waits here, then sees our versions applied.
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK_KEY)
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            rows = await connection.fetch("SELECT version FROM schema_migrations")
            pending = pending_migrations(self.dialect, {row["version"] for row in rows})
            for migration in pending:
                await connection.execute(migration.sql)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
        return [migration.version for migration in pending]

    async def applied_migrations(self) -> list[str]:
        async with self._transaction() as connection:
            if await connection.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return []
            rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
        return [row["version"] for row in rows]

    # -- entities ---------------------------------------------------------------------------

    @staticmethod
    async def _next_revision(connection: asyncpg.Connection) -> int:
        return await connection.fetchval("UPDATE entity_revision SET value = value + 1 RETURNING value")

    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        async with self._transaction() as connection:
            revision = await self._next_revision(connection)
            await connection.executemany(
                "INSERT INTO entities (type, id, properties, parents, revision, deleted)"
                " VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, FALSE)"
                " ON CONFLICT (type, id) DO UPDATE SET properties = excluded.properties,"
                " parents = excluded.parents, revision = excluded.revision, deleted = FALSE",
                [(e.type, e.id, *encode_entity(e), revision) for e in entities],
            )
        return revision

    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        async with self._transaction() as connection:
            revision = await self._next_revision(connection)
            await connection.executemany(
                "UPDATE entities SET deleted = TRUE, revision = $1, properties = $2::jsonb,"
                " parents = $3::jsonb WHERE type = $4 AND id = $5 AND NOT deleted",
                [(revision, EMPTY_PROPERTIES, EMPTY_PARENTS, uid.type, uid.id) for uid in uids],
            )
        return revision

    async def entity_changes(self, since_revision: int) -> EntityChanges:
        # One snapshot for the counter and the rows, so the rows are exactly those up to it.
        async with self._transaction(isolation="repeatable_read") as connection:
            revision = await connection.fetchval("SELECT value FROM entity_revision")
            # A full sync (since 0) has nothing to delete, so it skips tombstones.
            rows = await connection.fetch(
                "SELECT type, id, properties::text, parents::text, deleted FROM entities"
                " WHERE revision > $1 AND ($1 > 0 OR NOT deleted) ORDER BY revision, type, id",
                since_revision,
            )
        return decode_changes(revision, rows)

    async def entity_revision(self) -> int:
        async with self._connection() as connection:
            return await connection.fetchval("SELECT value FROM entity_revision")

    # -- secrets and keys -------------------------------------------------------------------

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        async with self._transaction() as connection:
            # A concurrent inserter makes ours wait for its commit, then do nothing; the SELECT
            # (a new snapshot under read committed) then sees the winner's value.
            await connection.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                name,
                candidate,
            )
            return await connection.fetchval("SELECT value FROM secrets WHERE name = $1", name)

    async def add_signing_key(self, key: SigningKey) -> None:
        retires_at = None if key.retires_at is None else as_utc(key.retires_at)
        async with self._connection() as connection:
            await connection.execute(
                "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retires_at)"
                " VALUES ($1, $2, $3, $4, $5)",
                key.kid,
                key.alg,
                key.private_jwk,
                as_utc(key.created_at),
                retires_at,
            )

    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        async with self._connection() as connection:
            rows = await connection.fetch(
                "SELECT kid, alg, private_jwk, created_at, retires_at FROM signing_keys"
                " WHERE retires_at IS NULL OR retires_at > $1 ORDER BY created_at DESC, kid DESC",
                as_utc(now),
            )
        return [SigningKey(*row) for row in rows]

    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        # "Older" follows the listing order (created_at, then kid), so ties are ordered too.
        async with self._connection() as connection:
            await connection.execute(
                "UPDATE signing_keys SET retires_at = $1 WHERE retires_at IS NULL"
                " AND (created_at, kid) < (SELECT created_at, kid FROM signing_keys WHERE kid = $2)",
                as_utc(retires_at),
                before_kid,
            )
