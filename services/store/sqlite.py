"""The embedded store: one SQLite file, shared by every worker process of one host.

Each store holds one connection, in autocommit mode so that transactions are explicit: writes
take the database write lock up front (`BEGIN IMMEDIATE`), which makes concurrent processes
queue on `busy_timeout` instead of failing on a lock upgrade half-way through a transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite

from services.store.base import Store, StoreUnavailable
from services.store.codec import EMPTY_PARENTS, EMPTY_PROPERTIES, as_utc, decode_changes, encode_entity
from services.store.migrations import pending_migrations
from services.store.records import EntityChanges, EntityRecord, EntityUid, SigningKey

BUSY_TIMEOUT_MS = 5000

# Primary result codes meaning "the database cannot be used right now" rather than a bug:
# another process held the write lock past busy_timeout, or the file cannot be opened.
_UNAVAILABLE_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_CANTOPEN})


@contextmanager
def _unavailable_when_locked() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as error:
        # Errors raised by Python's sqlite3 itself carry no result code.
        if (getattr(error, "sqlite_errorcode", 0) & 0xFF) in _UNAVAILABLE_CODES:
            raise StoreUnavailable(f"SQLite database unavailable: {error}") from error
        raise


def _format_time(moment: datetime) -> str:
    # Fixed precision keeps text order equal to time order.
    return as_utc(moment).isoformat(timespec="microseconds")


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _parse_optional_time(text: str | None) -> datetime | None:
    return None if text is None else _parse_time(text)


def _statements(script: str) -> Iterator[str]:
    """Split a migration into statements: `executescript` would COMMIT our open transaction."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        yield pending


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        # One connection cannot interleave transactions, so this store's coroutines take turns.
        self._turn = asyncio.Lock()

    async def open(self, *, migrate: bool = True) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _unavailable_when_locked():
            db = await aiosqlite.connect(self.path, isolation_level=None)
            try:
                # busy_timeout first: switching to WAL needs a lock another process may hold.
                await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                await db.close()
                raise
        self._db = db
        if migrate:
            try:
                await self.migrate()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @asynccontextmanager
    async def _transaction(self, *, write: bool) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction; a read-only one still gives its statements a single snapshot."""
        if self._db is None:
            raise RuntimeError("SQLiteStore used before open()")
        db = self._db
        async with self._turn:
            with _unavailable_when_locked():
                await db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    await db.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT, which leaves the transaction open.
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise

    async def ping(self) -> None:
        try:
            async with self._transaction(write=False) as db:
                await db.execute_fetchall("SELECT 1")
        except sqlite3.Error as error:
            raise StoreUnavailable(f"SQLite database unavailable: {error}") from error

    async def migrate(self) -> list[str]:
        async with self._transaction(write=True) as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            # Read inside the write lock: another process may have migrated while we waited.
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations")
            pending = pending_migrations(self.dialect, {version for (version,) in rows})
            for migration in pending:
                for statement in _statements(migration.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    (migration.version, _format_time(datetime.now(UTC))),
                )
        return [migration.version for migration in pending]

    async def applied_migrations(self) -> list[str]:
        async with self._transaction(write=False) as db:
            exists = await db.execute_fetchall(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
            )
            if not exists:
                return []
            rows = await db.execute_fetchall("SELECT version FROM schema_migrations ORDER BY version")
        return [row[0] for row in rows]

    # -- entities ---------------------------------------------------------------------------

    @staticmethod
    async def _next_revision(db: aiosqlite.Connection) -> int:
        rows = await db.execute_fetchall("UPDATE entity_revision SET value = value + 1 RETURNING value")
        return rows[0][0]

    async def upsert_entities(self, entities: Sequence[EntityRecord]) -> int:
        async with self._transaction(write=True) as db:
            revision = await self._next_revision(db)
            await db.executemany(
                "INSERT INTO entities (type, id, properties, parents, revision, deleted)"
                " VALUES (?, ?, ?, ?, ?, 0)"
                " ON CONFLICT (type, id) DO UPDATE SET properties = excluded.properties,"
                " parents = excluded.parents, revision = excluded.revision, deleted = 0",
                [(e.type, e.id, *encode_entity(e), revision) for e in entities],
            )
        return revision

    async def delete_entities(self, uids: Sequence[EntityUid]) -> int:
        async with self._transaction(write=True) as db:
            revision = await self._next_revision(db)
            await db.executemany(
                "UPDATE entities SET deleted = 1, revision = ?, properties = ?, parents = ?"
                " WHERE type = ? AND id = ? AND deleted = 0",
                [(revision, EMPTY_PROPERTIES, EMPTY_PARENTS, uid.type, uid.id) for uid in uids],
            )
        return revision

    async def entity_changes(self, since_revision: int) -> EntityChanges:
        async with self._transaction(write=False) as db:
            revision = (await db.execute_fetchall("SELECT value FROM entity_revision"))[0][0]
            # A full sync (since 0) has nothing to delete, so it skips tombstones.
            rows = await db.execute_fetchall(
                "SELECT type, id, properties, parents, deleted FROM entities"
                " WHERE revision > ? AND (? > 0 OR deleted = 0) ORDER BY revision, type, id",
                (since_revision, since_revision),
            )
        return decode_changes(revision, rows)

    async def entity_revision(self) -> int:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall("SELECT value FROM entity_revision")
        return rows[0][0]

    # -- secrets and keys -------------------------------------------------------------------

    async def get_or_create_secret(self, name: str, candidate: bytes) -> bytes:
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO secrets (name, value, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, candidate, _format_time(datetime.now(UTC))),
            )
            rows = await db.execute_fetchall("SELECT value FROM secrets WHERE name = ?", (name,))
        return rows[0][0]

    async def add_signing_key(self, key: SigningKey) -> None:
        retires_at = None if key.retires_at is None else _format_time(key.retires_at)
        async with self._transaction(write=True) as db:
            await db.execute(
                "INSERT INTO signing_keys (kid, alg, private_jwk, created_at, retires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (key.kid, key.alg, key.private_jwk, _format_time(key.created_at), retires_at),
            )

    async def signing_keys(self, now: datetime) -> list[SigningKey]:
        async with self._transaction(write=False) as db:
            rows = await db.execute_fetchall(
                "SELECT kid, alg, private_jwk, created_at, retires_at FROM signing_keys"
                " WHERE retires_at IS NULL OR retires_at > ? ORDER BY created_at DESC, kid DESC",
                (_format_time(now),),
            )
        return [
            SigningKey(kid, alg, jwk, _parse_time(created_at), _parse_optional_time(retires_at))
            for kid, alg, jwk, created_at, retires_at in rows
        ]

    async def retire_signing_keys(self, before_kid: str, retires_at: datetime) -> None:
        # "Older" follows the listing order (created_at, then kid), so ties are ordered too.
        async with self._transaction(write=True) as db:
            await db.execute(
                "UPDATE signing_keys SET retires_at = ? WHERE retires_at IS NULL"
                " AND (created_at, kid) < (SELECT created_at, kid FROM signing_keys WHERE kid = ?)",
                (_format_time(retires_at), before_kid),
            )
